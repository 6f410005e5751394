// Activation checkpointing of a chain of segments: torch.utils.checkpoint with the RNG state preserved, the full policy
// of the wrapper the official trainer puts around each student block
// (dinov3/fsdp/ac_compile_parallelize.py::get_activation_checkpoint_wrapper). A segment runs without autograd in the
// forward, keeping only its inputs; its activations are recomputed, with autograd, when the backward reaches it.
//
// libtorch's autograd engine runs CUDA backward nodes on its own device threads, which cannot call into JavaScript,
// so the recomputation is not an autograd node here: the chain's output is handed on as fresh leaves, the caller runs
// its backward (which stops at them), then `backward()` walks the segments last to first (recompute, backward of the
// segment with the gradients of its outputs), and finally feeds the gradients of the chain's input into the graph
// that produced it. The gradients are those of the plain forward: the same ops on the same values with the same
// random draws.
import { TorchTypeError } from '../native/errors.js';
import { view } from '../ops/shape.js';
import { expectArray, expectFunction, expectObject, expectTensorArg } from '../tensor/args.js';
import { Generator as GeneratorClass, type Generator, getRngState, setRngState, zerosLike } from '../tensor/creation.js';
import { backwardAll, enableGrad, isGradEnabled, noGrad } from '../tensor/grad_mode.js';
import { keep, scope } from '../tensor/scope.js';
import { describe, Tensor } from '../tensor/tensor.js';

interface Segment {
  fn: (xs: Tensor[], held: Tensor[]) => Tensor[];
  inputs: Tensor[];
  held: Tensor[];
  /** The RNG states before the segment ran: the global CPU generator's, and its own generator's when it has one. */
  rng: { global: Tensor; generator: Generator | undefined; own: Tensor | null };
}

/**
 * A chain of checkpointed segments over a list of tensors (a ViT's blocks over its crop groups).
 * @example
 * const chain = new CheckpointedChain(tokens);               // tokens: with the graph that made them
 * for (const blk of blocks) chain.segment((xs, [sin, cos]) => blk.forwardList(xs, [{ sin, cos }]), { hold: [rope.sin, rope.cos] });
 * const out = chain.output();                               // continue the forward from here
 * loss(out).backward();                                     // stops at the chain's output
 * chain.backward();                                         // recomputes each block; gradients reach every parameter
 */
export class CheckpointedChain {
  #input: Tensor[];
  #current: Tensor[];
  #segments: Segment[] = [];
  #outputs: Tensor[] | null = null;
  #done = false;

  /** `input`: the chain's input tensors, with the graph that produced them (the chain owns a handle to each). */
  constructor(input: readonly Tensor[]) {
    if (!Array.isArray(input) || input.length === 0)
      throw new TorchTypeError('CheckpointedChain: expected "input" to be a non-empty array of Tensors', 'ERR_INVALID_ARG');
    input.forEach((t, i) => expectTensorArg('CheckpointedChain', `input[${i}]`, t));
    this.#input = input.map((t) => keep(view(t, t.shape)));
    this.#current = noGrad(() => input.map((t) => keep(t.detach())));
  }

  /**
   * Runs `fn` on the chain's current tensors without autograd and makes its outputs current. `fn` must compute the
   * same thing when rerun in backward: its random draws come from the global CPU generator or `generator`, whose
   * states are restored for the rerun. Tensors it reads besides its inputs go in `hold`: `fn` receives them as its
   * second argument (handles the chain keeps until backward, so the caller's may be freed).
   */
  segment(fn: (xs: Tensor[], held: Tensor[]) => Tensor[], o: { generator?: Generator; hold?: readonly Tensor[] } = {}): void {
    this.#check('segment');
    expectFunction('CheckpointedChain.segment', 'fn', fn);
    expectObject('CheckpointedChain.segment', 'options', o);
    if (o.hold !== undefined) expectArray('CheckpointedChain.segment', 'options.hold', o.hold, 'an array of Tensors');
    if (o.generator !== undefined && !(o.generator instanceof GeneratorClass))
      throw new TorchTypeError(
        `CheckpointedChain.segment: expected "options.generator" to be a Generator, received ${describe(o.generator)}`,
        'ERR_INVALID_ARG',
      );
    if (this.#outputs) throw new TorchTypeError('CheckpointedChain.segment: the chain already has its output', 'ERR_INVALID_ARG');
    const rng = { global: keep(getRngState()), generator: o.generator, own: o.generator ? keep(o.generator.getState()) : null };
    const inputs = this.#current;
    const held = noGrad(() => (o.hold ?? []).map((t) => keep(view(t, t.shape))));
    const drop = () => {
      for (const t of [...held, rng.global, ...(rng.own ? [rng.own] : [])]) t.dispose();
    };
    let outputs: Tensor[];
    try {
      outputs = noGrad(() => scope(() => fn(inputs, held)));
    } catch (e) {
      drop(); // the chain stays as it was
      throw e;
    }
    if (!Array.isArray(outputs) || outputs.length === 0 || !outputs.every((t) => t instanceof Tensor)) {
      drop();
      throw new TorchTypeError(`CheckpointedChain.segment: "fn" must return a non-empty array of Tensors, returned ${describe(outputs)}`, 'ERR_INVALID_ARG');
    }
    this.#segments.push({ fn, inputs, held, rng });
    this.#current = outputs.map((t) => keep(t));
  }

  /** The chain's output, as new leaves that require grad (the caller's graph starts here); call once. */
  output(): Tensor[] {
    this.#check('output');
    if (this.#outputs) throw new TorchTypeError('CheckpointedChain.output: already taken', 'ERR_INVALID_ARG');
    this.#outputs = this.#current.map((t) => t.requiresGrad_(true));
    return this.#outputs.map((t) => view(t, t.shape));
  }

  /** Whether a backward has reached the output (some output has a gradient). */
  get reached(): boolean {
    const outs = this.#outputs;
    return !this.#done && outs !== null && scope(() => outs.some((t) => t.grad !== null));
  }

  /**
   * After a backward that reached the output: recomputes each segment with autograd (last first, each under its
   * saved RNG states, the current states restored after), backpropagates the gradients of its outputs through it, and
   * finally those of the chain's input into the graph that produced it. Frees everything the chain held. Outputs
   * that received no gradient count as zero.
   */
  backward(): void {
    this.#check('backward');
    if (!this.#outputs) throw new TorchTypeError('CheckpointedChain.backward: the chain has no output yet', 'ERR_INVALID_ARG');
    if (!isGradEnabled()) throw new TorchTypeError('CheckpointedChain.backward: called with autograd off (noGrad)', 'ERR_INVALID_ARG');
    try {
      let grads = scope(() => this.#outputs!.map((t) => keep(t.grad ?? zerosLike(t))));
      for (let i = this.#segments.length - 1; i >= 0; i--) {
        const s = this.#segments[i]!;
        const next = scope(() => {
          const xs = s.inputs.map((t) => t.detach().requiresGrad_(true));
          const ys = this.#withRng(s.rng, () => enableGrad(() => s.fn(xs, s.held)));
          backwardAll(ys, grads);
          return xs.map((x) => keep(x.grad ?? zerosLike(x)));
        });
        for (const g of grads) g.dispose();
        grads = next;
      }
      scope(() => backwardAll(this.#input, grads));
      for (const g of grads) g.dispose();
    } finally {
      this.dispose();
    }
  }

  /** Frees what the chain holds (also when its backward never runs). */
  dispose(): void {
    if (this.#done) return;
    this.#done = true;
    const all = [...this.#input, ...this.#current, ...(this.#outputs ?? [])];
    for (const s of this.#segments) all.push(...s.inputs, ...s.held, s.rng.global, ...(s.rng.own ? [s.rng.own] : []));
    for (const t of new Set(all)) if (!t.isDisposed) t.dispose();
  }

  #withRng<R>(rng: Segment['rng'], fn: () => R): R {
    const now = { global: getRngState(), own: rng.generator?.getState() ?? null };
    setRngState(rng.global);
    if (rng.own) rng.generator!.setState(rng.own);
    try {
      return fn();
    } finally {
      setRngState(now.global);
      if (now.own) rng.generator!.setState(now.own);
      now.global.dispose();
      now.own?.dispose();
    }
  }

  #check(op: string): void {
    if (this.#done) throw new TorchTypeError(`CheckpointedChain.${op}: the chain was disposed (its backward ran)`, 'ERR_INVALID_ARG');
  }
}
