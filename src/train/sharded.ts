// Data-parallel and sharded SSL training over a process group. Official counterpart:
// dinov3/fsdp/ac_compile_parallelize.py::ac_compile_parallelize wraps every student and teacher submodule (backbone
// with one unit per block, dino_head, ibot_head) with fully_shard; dinov3/train/train.py::do_train then clips the
// gradients per submodule (a global norm over the ranks, the DTensor gradients being sharded), steps AdamW on the
// local shards, and dinov3/train/ssl_meta_arch.py::SSLMetaArch.update_ema runs the EMA on the local shards.
//
// Global-batch semantics: each rank's losses are means over its local batch (Sinkhorn-Knopp normalises over all ranks'
// samples, `ibot_patch_loss.py` divides by the local number of global crops), and the gradients are averaged over
// the ranks (reduce-scatter ÷ world); with equal local batches this is the gradient of one process on the global
// batch. KoLeo: the official non-distributed KoLeo (`dino.koleo_loss_distributed=false`, the default) is computed on
// each rank's own batch, as officially, and so differs from one process on the whole batch; the distributed KoLeo
// (`koleo_loss_distributed=true`) finds the neighbours over all ranks and matches one process exactly.
import { ConfigError } from '../native/errors.js';
import { FullyShardedModule, type ShardingStrategy } from '../distributed/fsdp.js';
import type { CollectiveGroup, ProcessGroup, Work } from '../distributed/process_group.js';
import type { Module } from '../nn/module.js';
import { AdamW } from '../optim/adamw.js';
import { emaUpdate } from '../optim/ema.js';
import type { Tensor } from '../tensor/tensor.js';
import { showJson } from '../tensor/args.js';
import { studentParamGroups, type SSLParamGroup } from './param_groups.js';
import type { SSLMetaArch } from './ssl_meta_arch.js';
import type { OptimConfig } from './train.js';

/** How the trainer spreads the student over the ranks (`compute_precision.sharding_strategy`). */
export type TrainerSharding = ShardingStrategy | 'NO_SHARD';

export const SHARDING_STRATEGIES: readonly TrainerSharding[] = ['SHARD_GRAD_OP', 'FULL_SHARD', 'NO_SHARD'];

/** Whether `g` has the collectives of sharded training (a C10dProcessGroup or LocalProcessGroup does). */
export function isCollectiveGroup(g: ProcessGroup): g is CollectiveGroup {
  if (typeof g !== 'object' || g === null) return false;
  const c = g as Partial<CollectiveGroup>;
  return typeof c.allReduce === 'function' && typeof c.allGatherInto === 'function' && typeof c.reduceScatter === 'function' && typeof c.barrier === 'function';
}

/** Per-rank bytes of parameters, gradients and optimizer state, and the unsharded totals they divide. */
export interface ShardMemoryReport {
  worldSize: number;
  strategy: TrainerSharding;
  /** Student + teacher master shards held on this rank. */
  paramBytes: number;
  /** Student gradient shards on this rank. */
  gradBytes: number;
  /** AdamW moments on this rank. */
  optimizerBytes: number;
  /** Student + teacher parameters, unsharded. */
  unshardedParamBytes: number;
  /** AdamW moments of the unsharded student (2 × its trainable parameters). */
  unshardedOptimizerBytes: number;
  /** (paramBytes + optimizerBytes) / (unshardedParamBytes + unshardedOptimizerBytes). */
  fraction: number;
}

const unitsOf = (m: Module): Module[] => {
  const blocks = (m as Module & { blocks?: unknown }).blocks;
  return Array.isArray(blocks) ? (blocks as Module[]) : [];
};

/**
 * The student and teacher of an SSLMetaArch spread over `group`: FULL_SHARD / SHARD_GRAD_OP wrap each submodule in a
 * FullyShardedModule (blocks as units); NO_SHARD keeps replicas and averages the gradients (DDP). Installs itself as
 * the model's `distributed` hooks (backward, EMA) and builds the optimizer over what this rank updates.
 */
export class ShardedSSL {
  readonly student = new Map<string, FullyShardedModule<Module>>();
  readonly teacher = new Map<string, FullyShardedModule<Module>>();
  readonly #unsharded: { params: number; trainable: number };

  constructor(
    readonly model: SSLMetaArch,
    readonly group: CollectiveGroup,
    readonly strategy: TrainerSharding,
  ) {
    if (!SHARDING_STRATEGIES.includes(strategy))
      throw new ConfigError(`compute_precision.sharding_strategy must be one of ${SHARDING_STRATEGIES.join(', ')}, got ${showJson(strategy)}`);
    if (model.gramTeacher) throw new ConfigError('sharded training with a separate gram teacher is not supported yet (use gram.ema_teacher or one process)');
    const all = [...model.student.parameters(), ...model.teacher.parameters()];
    this.#unsharded = {
      params: all.reduce((a, p) => a + p.numel * 4, 0),
      trainable: model.student
        .parameters()
        .filter((p) => p.requiresGrad)
        .reduce((a, p) => a + p.numel, 0),
    };
    // Every rank starts from rank 0's weights (official: FSDP's sync_module_states / DDP's broadcast). Broadcast in
    // place on the parameters, not on FullyShardedModule's flat copies: a finished c10d work still references its
    // tensors until the JS garbage collector frees it, which for a flat copy would keep a second full-size model alive.
    if (group.worldSize > 1) {
      const works = [...model.student.parameters(), ...model.teacher.parameters()].map((p) => group.broadcast(p, 0));
      for (const w of works) w.waitSync();
    }
    if (strategy !== 'NO_SHARD') {
      const teacherParts = new Map(model.teacher.children());
      for (const [name, m] of model.studentSubmodules()) {
        const t = teacherParts.get(name);
        if (!t) throw new ConfigError(`sharded training: the teacher has no "${name}" submodule`);
        this.student.set(name, new FullyShardedModule(m, { group, strategy, units: unitsOf(m), syncModuleStates: false }));
        this.teacher.set(name, new FullyShardedModule(t, { group, strategy, units: unitsOf(t), syncModuleStates: false }));
      }
    }
    model.distributed = {
      backward: (loss, finish) => this.backward(loss, finish),
      updateEma: (m) => this.updateEma(m),
      clipGradNorms: (max) => this.clipGradNorms(max),
    };
  }

  get sharded(): boolean {
    return this.strategy !== 'NO_SHARD';
  }

  /**
   * The student's loss backward with the gradients averaged over the ranks (reduce-scattered into shards when sharded);
   * `finish` completes the backward (the recomputed blocks of activation checkpointing) before the gradients are averaged.
   */
  backward(loss: Tensor, finish?: () => void): void {
    if (this.sharded) {
      const parts = [...this.student.values()];
      for (const f of parts) f.beforeBackward();
      loss.backward();
      // Checkpointed blocks rerun their forward (each unit gathered again, its hooks placed) and backward (the
      // hooks reduce-scatter the unit's gradients), before what is left is reduced.
      finish?.();
      for (const f of parts) f.afterBackward();
      return;
    }
    loss.backward();
    finish?.();
    if (this.group.worldSize === 1) return;
    const works: Work[] = [];
    for (const p of this.model.student.parameters()) if (p.grad) works.push(this.group.allReduce(p.grad, 'avg'));
    for (const w of works) w.waitSync();
  }

  /** Per student submodule: the gradient norm before clipping (global over the ranks), gradients clipped to `max`. */
  clipGradNorms(max: number): [string, Tensor][] | null {
    if (!this.sharded) return null;
    return [...this.student].map(([k, f]) => [k, f.clipGradNorm_(max)]);
  }

  /** teacher ← m·teacher + (1 − m)·student on this rank's shards (official update_ema on the local DTensor shards). */
  updateEma(m: number): void {
    if (!this.sharded) return emaUpdate(this.model.teacher.parameters(), this.model.student.parameters(), m);
    for (const [k, s] of this.student) emaUpdate(this.teacher.get(k)!.flatShards(), s.flatShards(), m);
  }

  /**
   * AdamW over what this rank updates, with the official parameter groups (the groups are those of the unsharded
   * student; each parameter is replaced by its view of this rank's shard, and groups may be empty on a rank).
   * `groups` must have been computed before the wrap (`studentParamGroups` of the unsharded student).
   */
  static optimizerGroups(model: SSLMetaArch, optim: OptimConfig): SSLParamGroup[] {
    return studentParamGroups(model.studentSubmodules(), {
      lrDecayRate: optim.layerwise_decay,
      patchEmbedLrMult: optim.patch_embed_lr_mult,
      dinoHeadWdMultiplier: optim.dino_head_wd_multiplier,
      fuse: optim.multi_tensor_optim,
    });
  }

  buildOptimizer(groups: SSLParamGroup[], optim: OptimConfig): AdamW & { paramGroups: (SSLParamGroup & { lr: number; weightDecay: number })[] } {
    let mapped = groups;
    if (this.sharded) {
      const views = new Map<string, Tensor>();
      for (const [k, f] of this.student) for (const [n, v] of f.namedShardedParameters()) views.set(`${k}.${n}`, v);
      mapped = groups.map((g) => {
        const names = g.names.filter((n) => views.has(n));
        return { ...g, names, params: names.map((n) => views.get(n)!) };
      });
    }
    return new AdamW(mapped, { betas: [optim.adamw_beta1, optim.adamw_beta2] }) as AdamW & {
      paramGroups: (SSLParamGroup & { lr: number; weightDecay: number })[];
    };
  }

  /** What this rank holds, against the unsharded totals. */
  memoryReport(optimizer: AdamW): ShardMemoryReport {
    let paramBytes: number;
    let gradBytes: number;
    if (this.sharded) {
      paramBytes = 0;
      gradBytes = 0;
      for (const f of [...this.student.values(), ...this.teacher.values()]) paramBytes += f.shardBytes().params;
      for (const f of this.student.values()) gradBytes += f.shardBytes().grads;
    } else {
      paramBytes = this.#unsharded.params;
      gradBytes = this.#unsharded.trainable * 4;
    }
    const sd = optimizer.stateDict();
    const optimizerBytes = sd.state.reduce((a, s) => a + [...s.expAvg, ...s.expAvgSq].reduce((b, t) => b + t.numel * 4, 0), 0);
    const unshardedOptimizerBytes = 2 * 4 * this.#unsharded.trainable;
    return {
      worldSize: this.group.worldSize,
      strategy: this.strategy,
      paramBytes,
      gradBytes,
      optimizerBytes,
      unshardedParamBytes: this.#unsharded.params,
      unshardedOptimizerBytes,
      fraction: (paramBytes + optimizerBytes) / (this.#unsharded.params + unshardedOptimizerBytes),
    };
  }

  dispose(): void {
    this.model.distributed = null;
    for (const f of [...this.student.values(), ...this.teacher.values()]) f.dispose();
    this.student.clear();
    this.teacher.clear();
  }
}
