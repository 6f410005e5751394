// Pixel kernels of the DINO multi-crop augmentation (dinov3/data/augmentations.py::DataAugmentationDINO) on
// interleaved 8-bit RGB, for src/data/augmentations.ts. One call does one crop's whole chain — crop + PIL bicubic
// resample, flip, color jitter in the drawn order, grayscale, Gaussian blur, solarize, and either ToImage + ToDtype +
// Normalize into CHW float32 or the 8-bit HWC result — on plain typed arrays, synchronously on the calling thread (a
// loader worker thread), without libtorch. The arithmetic is that of src/data/kernels.ts (the TypeScript reference):
// PIL's fixed-point resampler (Resample.c), ImageEnhance blends (Blend.c), 'L' and HSV conversions (Convert.c), and
// torchvision v2's float Gaussian blur.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

namespace dinov3 {
namespace {

// Layout of the Float64Array `spec` (kept in sync with AUGMENT_SPEC in src/data/augmentations.ts).
enum Spec : int {
  kTop, kLeft, kCropH, kCropW, kOutH, kOutW, kFlip,
  kNJitter, kOp0, kOp1, kOp2, kOp3, kBrightness, kContrast, kSaturation, kHue,
  kGrayscale, kBlurSigma, kBlurKernel, kSolarize,
  kMean0, kMean1, kMean2, kStd0, kStd1, kStd2, kOutKind,
  kSpecLen
};

// The hot loops are also compiled for AVX2 and picked at load time (x86-64 Linux with GCC/Clang ifuncs). AVX2
// without FMA: the float results are the same as the baseline build (no contraction), the integer ones trivially.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define DINOV3_AUG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DINOV3_AUG_CLONES
#endif

constexpr int kPrecisionBits = 22;  // PIL: 32 - 8 - 2
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

inline double Bicubic(double x) {  // PIL's bicubic_filter, a = -0.5
  if (x < 0) x = -x;
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int32_t> bounds;  // [xmin, n] per output
  std::vector<int32_t> k;       // fixed point, ksize per output
};

// PIL's precompute_coeffs + normalize_coeffs_8bpc (in0 = 0, in1 = inSize).
Coeffs PrecomputeCoeffs(int inSize, int outSize) {
  Coeffs c;
  double scale = static_cast<double>(inSize) / outSize;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.assign(outSize * 2, 0);
  c.k.assign(static_cast<size_t>(outSize) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  double ss = 1.0 / filterscale;
  for (int xx = 0; xx < outSize; xx++) {
    double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; x++) {
      w[x] = Bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; x++) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits)) : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t ss) {
  int32_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

struct Image {
  std::vector<uint8_t> data;
  int w = 0, h = 0;
};

// img.crop(box).resize((outW, outH), BICUBIC): PIL's ImagingResampleInner (horizontal pass over the rows the
// vertical pass reads, 8-bit intermediate, then the vertical pass).
DINOV3_AUG_CLONES Image ResizedCrop(const uint8_t* src, int sw, int top, int left, int ch, int cw, int outH, int outW) {
  const size_t sstride = static_cast<size_t>(sw) * 3;
  bool needH = cw != outW, needV = ch != outH;
  Image out;
  out.w = outW;
  out.h = outH;
  if (!needH && !needV) {
    out.data.resize(static_cast<size_t>(cw) * ch * 3);
    for (int y = 0; y < ch; y++)
      std::memcpy(&out.data[static_cast<size_t>(y) * cw * 3], src + (top + y) * sstride + left * 3, static_cast<size_t>(cw) * 3);
    return out;
  }
  Coeffs vert = PrecomputeCoeffs(ch, outH);
  int yFirst = vert.bounds[0];
  int yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
  std::vector<uint8_t> tmpBuf;
  const uint8_t* tmp;
  size_t tstride;
  if (needH) {
    Coeffs hor = PrecomputeCoeffs(cw, outW);
    const int rows = std::max(0, yLast - yFirst);  // never negative; saying so spares GCC 12 a false -Walloc-size-larger-than
    tstride = static_cast<size_t>(outW) * 3;
    tmpBuf.resize(rows * tstride);
    // The horizontal pass runs on a transposed copy of the rows it needs (column x = all rows' RGB, contiguous), so
    // each output column is a sum of whole columns times one weight: contiguous integer loops the compiler
    // vectorises. Same integer sums as PIL's ImagingResampleHorizontal_8bpc, so the same bytes.
    const size_t colLen = static_cast<size_t>(rows) * 3;
    std::vector<uint8_t> cols(static_cast<size_t>(cw) * colLen);
    constexpr int kBlock = 16;
    for (int r0 = 0; r0 < rows; r0 += kBlock) {
      const int r1 = std::min(rows, r0 + kBlock);
      for (int x = 0; x < cw; x++) {
        uint8_t* c = &cols[x * colLen];
        for (int r = r0; r < r1; r++) {
          const uint8_t* p = src + (top + yFirst + r) * sstride + (left + x) * 3;
          c[r * 3] = p[0];
          c[r * 3 + 1] = p[1];
          c[r * 3 + 2] = p[2];
        }
      }
    }
    std::vector<int32_t> acc(colLen);
    std::vector<uint8_t> outCols(static_cast<size_t>(outW) * colLen);
    for (int xx = 0; xx < outW; xx++) {
      const int xmin = hor.bounds[xx * 2], n = hor.bounds[xx * 2 + 1];
      const int32_t* k = &hor.k[static_cast<size_t>(xx) * hor.ksize];
      int32_t* __restrict a = acc.data();
      std::fill(a, a + colLen, kHalf);
      for (int x = 0; x < n; x++) {
        const int32_t kx = k[x];
        const uint8_t* __restrict c = &cols[(xmin + x) * colLen];
        for (size_t i = 0; i < colLen; i++) a[i] += c[i] * kx;
      }
      uint8_t* __restrict o = &outCols[xx * colLen];
      for (size_t i = 0; i < colLen; i++) o[i] = Clip8(a[i]);
    }
    for (int r0 = 0; r0 < rows; r0 += kBlock) {
      const int r1 = std::min(rows, r0 + kBlock);
      for (int xx = 0; xx < outW; xx++) {
        const uint8_t* c = &outCols[xx * colLen];
        for (int r = r0; r < r1; r++) {
          uint8_t* t = &tmpBuf[r * tstride + xx * 3];
          t[0] = c[r * 3];
          t[1] = c[r * 3 + 1];
          t[2] = c[r * 3 + 2];
        }
      }
    }
    tmp = tmpBuf.data();
  } else {
    tstride = sstride;
    tmp = src + (top + yFirst) * sstride + left * 3;
  }
  const size_t rowBytes = static_cast<size_t>(outW) * 3;
  out.data.resize(rowBytes * outH);
  if (!needV) {
    for (int y = 0; y < outH; y++) std::memcpy(&out.data[y * rowBytes], tmp + y * tstride, rowBytes);
    return out;
  }
  std::vector<int32_t> acc(rowBytes);
  for (int yy = 0; yy < outH; yy++) {
    const int ymin = vert.bounds[yy * 2] - yFirst, n = vert.bounds[yy * 2 + 1];
    const int32_t* k = &vert.k[static_cast<size_t>(yy) * vert.ksize];
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int y = 0; y < n; y++) {
      const int32_t kk = k[y];
      const uint8_t* row = tmp + (ymin + y) * tstride;
      for (size_t i = 0; i < rowBytes; i++) acc[i] += row[i] * kk;
    }
    uint8_t* o = &out.data[yy * rowBytes];
    for (size_t i = 0; i < rowBytes; i++) o[i] = Clip8(acc[i]);
  }
  return out;
}

void Hflip(Image& im) {
  for (int y = 0; y < im.h; y++) {
    uint8_t* a = &im.data[static_cast<size_t>(y) * im.w * 3];
    uint8_t* b = a + (im.w - 1) * 3;
    for (; a < b; a += 3, b -= 3)
      for (int c = 0; c < 3; c++) std::swap(a[c], b[c]);
  }
}

inline int Luma(int r, int g, int b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }  // Convert.c L24

// PIL Blend.c: in1 + alpha * (in2 - in1) in C float, truncated; clipped when extrapolating.
inline uint8_t Blend1(int in1, int in2, float alpha, bool extrapolate) {
  float t = static_cast<float>(in1) + alpha * static_cast<float>(in2 - in1);
  if (!extrapolate) return static_cast<uint8_t>(t);
  return t <= 0.0f ? 0 : t >= 255.0f ? 255 : static_cast<uint8_t>(t);
}

inline bool Extrapolates(float a) { return !(a >= 0.0f && a <= 1.0f); }

void ApplyLut(Image& im, const uint8_t* lut) {
  for (auto& v : im.data) v = lut[v];
}

void Brightness(Image& im, double factor) {  // ImageEnhance.Brightness: blend(black, img)
  float a = static_cast<float>(factor);
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = Blend1(0, v, a, Extrapolates(a));
  ApplyLut(im, lut);
}

void Contrast(Image& im, double factor) {  // ImageEnhance.Contrast: blend(grey int(mean L + 0.5), img)
  double sum = 0;
  const size_t n = im.data.size() / 3;
  const uint8_t* d = im.data.data();
  for (size_t i = 0; i < n; i++) sum += Luma(d[3 * i], d[3 * i + 1], d[3 * i + 2]);
  int mean = static_cast<int>(sum / static_cast<double>(n) + 0.5);
  float a = static_cast<float>(factor);
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = Blend1(mean, v, a, Extrapolates(a));
  ApplyLut(im, lut);
}

void Saturation(Image& im, double factor) {  // ImageEnhance.Color: blend(img as L → RGB, img)
  float a = static_cast<float>(factor);
  bool ex = Extrapolates(a);
  uint8_t* d = im.data.data();
  const size_t n = im.data.size();
  for (size_t i = 0; i < n; i += 3) {
    int l = Luma(d[i], d[i + 1], d[i + 2]);
    d[i] = Blend1(l, d[i], a, ex);
    d[i + 1] = Blend1(l, d[i + 1], a, ex);
    d[i + 2] = Blend1(l, d[i + 2], a, ex);
  }
}

inline int Clip8i(int v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

// C round() (half away from zero) for x >= 0 without a libm call: x − trunc(x) is exact.
inline int RoundPos(double x) {
  int r = static_cast<int>(x);
  return x - r >= 0.5 ? r + 1 : r;
}

// torchvision _functional_pil.adjust_hue: RGB → HSV (Convert.c rgb2hsv_row), h += uint8(int32(f·255)), HSV → RGB
// (Convert.c hsv2rgb), with the C float/double steps of Pillow.
// (float)a / (float)b for 8-bit a, b (b ≥ 1), at [a·256 + b]: the same correctly rounded float quotients as the
// divisions of Convert.c::rgb2hsv_row, looked up.
const float* DivTable() {
  static const std::vector<float> table = [] {
    std::vector<float> t(256 * 256, 0.0f);
    for (int a = 0; a < 256; a++)
      for (int b = 1; b < 256; b++) t[a * 256 + b] = static_cast<float>(a) / static_cast<float>(b);
    return t;
  }();
  return table.data();
}

void Hue(Image& im, double factor) {
  const float* div = DivTable();
  const int shift = ((static_cast<int32_t>(factor * 255) % 256) + 256) % 256;
  uint8_t* d = im.data.data();
  const size_t n = im.data.size();
  for (size_t i = 0; i < n; i += 3) {
    const int r = d[i], g = d[i + 1], b = d[i + 2];
    const int maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
    if (maxc == minc) continue;  // grey: (v, v, v) back
    const int cr = maxc - minc;
    const float* dcr = &div[cr];  // dcr[a * 256] = a / cr
    float s = div[cr * 256 + maxc];
    float rc = dcr[(maxc - r) * 256];
    float gc = dcr[(maxc - g) * 256];
    float bc = dcr[(maxc - b) * 256];
    float h;
    if (r == maxc) h = bc - gc;
    else if (g == maxc) h = static_cast<float>(2.0 + rc - bc);
    else h = static_cast<float>(4.0 + gc - rc);
    // fmod(h/6 + 1, 1): the argument lies in [0.8, 1.9), so one exact subtraction does it.
    double h1 = h / 6.0 + 1.0;
    h = static_cast<float>(h1 >= 1.0 ? h1 - 1.0 : h1);
    const int uh = Clip8i(static_cast<int>(h * 255.0));
    const int us = Clip8i(static_cast<int>(s * 255.0));
    const int hh = (uh + shift) & 255;
    const int v = maxc;
    if (us == 0) {
      d[i] = d[i + 1] = d[i + 2] = static_cast<uint8_t>(v);
      continue;
    }
    // floor(hh·6/255): integer division is exact here (the quotient is never within 1/255 of an integer from below).
    const int ii = hh * 6 / 255;
    const float f = static_cast<float>(static_cast<float>(hh) * 6.0 / 255.0 - static_cast<float>(ii));
    const float fs = static_cast<float>(static_cast<float>(us) / 255.0);
    const uint8_t p = static_cast<uint8_t>(Clip8i(RoundPos(static_cast<float>(v) * (1.0 - fs))));
    const uint8_t q = static_cast<uint8_t>(Clip8i(RoundPos(static_cast<float>(v) * (1.0 - fs * f))));
    const uint8_t t = static_cast<uint8_t>(Clip8i(RoundPos(static_cast<float>(v) * (1.0 - fs * (1.0 - f)))));
    const uint8_t vv = static_cast<uint8_t>(v);
    switch (ii % 6) {
      case 0: d[i] = vv; d[i + 1] = t; d[i + 2] = p; break;
      case 1: d[i] = q; d[i + 1] = vv; d[i + 2] = p; break;
      case 2: d[i] = p; d[i + 1] = vv; d[i + 2] = t; break;
      case 3: d[i] = p; d[i + 1] = q; d[i + 2] = vv; break;
      case 4: d[i] = t; d[i + 1] = p; d[i + 2] = vv; break;
      default: d[i] = vv; d[i + 1] = p; d[i + 2] = q; break;
    }
  }
}

void Grayscale(Image& im) {
  uint8_t* d = im.data.data();
  for (size_t i = 0; i < im.data.size(); i += 3) d[i] = d[i + 1] = d[i + 2] = static_cast<uint8_t>(Luma(d[i], d[i + 1], d[i + 2]));
}

void Solarize(Image& im, int threshold) {  // ImageOps.solarize
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = static_cast<uint8_t>(v < threshold ? v : 255 - v);
  ApplyLut(im, lut);
}

inline int Reflect(int i, int n) {
  if (n == 1) return 0;
  int period = 2 * (n - 1);
  i = ((i % period) + period) % period;
  return i < n ? i : period - i;
}

// torchvision v2 gaussian_blur on a PIL image: float32, reflect padding, k×k Gaussian (softmax of −(x/σ)² on
// linspace(−lim, lim, k), lim = (k−1)/(2√2)) as two 1-D passes, rounded (half to even) back to 8 bits.
DINOV3_AUG_CLONES void GaussianBlur(Image& im, int ksize, double sigma) {
  const int half = ksize / 2;
  std::vector<float> k(ksize);
  {
    const double lim = (ksize - 1) / (2.0 * std::sqrt(2.0));
    std::vector<double> z(ksize);
    double mx = -1e300;
    for (int i = 0; i < ksize; i++) {
      float x = static_cast<float>(ksize == 1 ? -lim : -lim + (2 * lim / (ksize - 1)) * i);
      float q = x / static_cast<float>(sigma);
      z[i] = -static_cast<double>(q * q);
      mx = std::max(mx, z[i]);
    }
    double s = 0;
    for (int i = 0; i < ksize; i++) s += (z[i] = std::exp(z[i] - mx));
    for (int i = 0; i < ksize; i++) k[i] = static_cast<float>(z[i] / s);
  }
  const int w = im.w, h = im.h;
  const size_t stride = static_cast<size_t>(w) * 3;
  std::vector<float> tmp(im.data.size());
  // Horizontal pass on a reflect-padded float copy of each row: t[i] = Σ_j k[j]·P[i + 3j] over the interleaved
  // row, accumulated in j order (contiguous, so the compiler vectorises it).
  std::vector<int> xo(w + 2 * half);
  for (int x = -half; x < w + half; x++) xo[x + half] = Reflect(x, w) * 3;
  std::vector<float> padded(static_cast<size_t>(w + 2 * half) * 3);
  const uint8_t* d = im.data.data();
  for (int y = 0; y < h; y++) {
    const uint8_t* row = d + y * stride;
    for (int x = 0; x < w + 2 * half; x++) {
      padded[x * 3] = row[xo[x]];
      padded[x * 3 + 1] = row[xo[x] + 1];
      padded[x * 3 + 2] = row[xo[x] + 2];
    }
    float* __restrict t = &tmp[y * stride];
    std::fill(t, t + stride, 0.0f);
    for (int j = 0; j < ksize; j++) {
      const float kj = k[j];
      const float* __restrict pj = padded.data() + 3 * j;
      for (size_t i = 0; i < stride; i++) t[i] += pj[i] * kj;
    }
  }
  std::vector<float> acc(stride);
  for (int y = 0; y < h; y++) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int j = 0; j < ksize; j++) {
      const float* row = &tmp[Reflect(y + j - half, h) * stride];
      const float kj = k[j];
      for (size_t i = 0; i < stride; i++) acc[i] += row[i] * kj;
    }
    uint8_t* o = im.data.data() + y * stride;
    // Round half to even (torch's round_) without a libm call: adding and removing 1.5·2^23 rounds a float in
    // [0, 2^22) to an integer in the default rounding mode; blurred 8-bit values are in [0, 255.x].
    for (size_t i = 0; i < stride; i++) {
      const float v = acc[i] < 0.0f ? 0.0f : acc[i];
      const float r = (v + 12582912.0f) - 12582912.0f;  // IEEE arithmetic (no -ffast-math): not folded away
      o[i] = static_cast<uint8_t>(r > 255.0f ? 255 : static_cast<int>(r));
    }
  }
}

const uint8_t* TypedBytes(Args& a, size_t i, const char* name, size_t* len) {
  if (!a.has(i) || !a.raw(i).IsTypedArray()) a.typeError(i, name, "a Uint8Array");
  auto ta = a.raw(i).As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array && ta.TypedArrayType() != napi_uint8_clamped_array) a.typeError(i, name, "a Uint8Array");
  *len = ta.ByteLength();
  return static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

Napi::Value AugmentCrop(Args& a) {
  size_t srcLen = 0;
  const uint8_t* src = TypedBytes(a, 0, "image", &srcLen);
  const int64_t sw = a.i64(1, "width"), sh = a.i64(2, "height");
  if (sw < 1 || sh < 1 || static_cast<size_t>(sw * sh * 3) != srcLen)
    a.valueError("image must hold width × height × 3 bytes: " + std::to_string(sw) + "×" + std::to_string(sh) + "×3 ≠ " +
                 std::to_string(srcLen));
  if (!a.has(3) || !a.raw(3).IsTypedArray() || a.raw(3).As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    a.typeError(3, "spec", "a Float64Array");
  auto specArr = a.raw(3).As<Napi::Float64Array>();
  if (specArr.ElementLength() != kSpecLen) a.valueError("spec must have " + std::to_string(kSpecLen) + " entries");
  const double* sp = specArr.Data();
  auto I = [&](int k) { return static_cast<int>(sp[k]); };
  const int top = I(kTop), left = I(kLeft), ch = I(kCropH), cw = I(kCropW), oh = I(kOutH), ow = I(kOutW);
  if (top < 0 || left < 0 || ch < 1 || cw < 1 || top + ch > sh || left + cw > sw)
    a.valueError("crop box " + std::to_string(cw) + "×" + std::to_string(ch) + " at (" + std::to_string(left) + ", " +
                 std::to_string(top) + ") is outside the " + std::to_string(sw) + "×" + std::to_string(sh) + " image");
  if (oh < 1 || ow < 1 || oh > 16384 || ow > 16384) a.valueError("output size must be in [1, 16384]");

  Image im = ResizedCrop(src, static_cast<int>(sw), top, left, ch, cw, oh, ow);
  if (sp[kFlip] != 0) Hflip(im);
  const int nj = I(kNJitter);
  if (nj < 0 || nj > 4) a.valueError("spec: jitter op count must be in [0, 4]");
  for (int j = 0; j < nj; j++) {
    switch (I(kOp0 + j)) {
      case 0: Brightness(im, sp[kBrightness]); break;
      case 1: Contrast(im, sp[kContrast]); break;
      case 2: Saturation(im, sp[kSaturation]); break;
      case 3:
        if (!(sp[kHue] >= -0.5 && sp[kHue] <= 0.5)) a.valueError("hue factor must be in [-0.5, 0.5]");
        Hue(im, sp[kHue]);
        break;
      default: a.valueError("spec: jitter op ids are 0..3");
    }
  }
  if (sp[kGrayscale] != 0) Grayscale(im);
  if (sp[kBlurSigma] > 0) {
    const int ks = I(kBlurKernel);
    if (ks < 1 || ks % 2 != 1) a.valueError("blur kernel size must be odd and positive");
    if (ks / 2 >= im.w || ks / 2 >= im.h) a.valueError("a reflect-padded blur needs an image larger than half its kernel");
    GaussianBlur(im, ks, sp[kBlurSigma]);
  }
  if (sp[kSolarize] >= 0 && sp[kSolarize] <= 255) Solarize(im, I(kSolarize));

  Napi::Env env = a.env();
  if (sp[kOutKind] != 0) {
    auto out = Napi::Uint8Array::New(env, im.data.size());
    std::memcpy(out.Data(), im.data.data(), im.data.size());
    return out;
  }
  const size_t plane = static_cast<size_t>(im.w) * im.h;
  auto out = Napi::Float32Array::New(env, 3 * plane);
  float lut[3][256];
  const float inv = 1.0f / 255.0f;
  for (int c = 0; c < 3; c++) {
    const float m = static_cast<float>(sp[kMean0 + c]), s = static_cast<float>(sp[kStd0 + c]);
    for (int v = 0; v < 256; v++) lut[c][v] = (static_cast<float>(v) * inv - m) / s;
  }
  float* o = out.Data();
  const uint8_t* d = im.data.data();
  for (size_t p = 0; p < plane; p++) {
    o[p] = lut[0][d[3 * p]];
    o[plane + p] = lut[1][d[3 * p + 1]];
    o[2 * plane + p] = lut[2][d[3 * p + 2]];
  }
  return out;
}

}  // namespace

void InitAugment(Napi::Env env, Napi::Object e) {
  // augmentCrop(image Uint8Array HWC RGB, width, height, spec Float64Array) → Float32Array (CHW, normalised) or
  // Uint8Array (HWC) per spec[kOutKind]: one crop of DataAugmentationDINO, no tensors, usable from worker threads.
  Def(env, e, "augmentCrop", [](Args& a) { return AugmentCrop(a); });
}

}  // namespace dinov3
