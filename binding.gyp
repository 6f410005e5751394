{
  # node-gyp build of the same addon as CMakeLists.txt (the primary, cmake-js build). scripts/setup.mjs runs it in
  # build-gyp/stage (symlinks to the repository) when CI or DINOV3_BUILD_GYP=1 and copies the result to
  # build-gyp/Release/dinov3.node. Sources are listed at configure time (every native/src/**/*.cc, sorted), so new
  # files are picked up as with CMake's GLOB_RECURSE. libtorch: $LIBTORCH (a libtorch/PyTorch prefix with include/
  # and lib/, or torch.utils.cmake_prefix_path = <prefix>/share/cmake) or else Debian's libtorch-dev (/usr/include,
  # /usr/lib/<multiarch>).
  'variables': {
    'torch_include%': '<!(node -p "process.env.LIBTORCH ? require(\'path\').resolve(process.env.LIBTORCH.split(\'/share/cmake\')[0], \'include\') : \'/usr/include\'")',
    'torch_libdir%': '<!(node -p "process.env.LIBTORCH ? require(\'path\').resolve(process.env.LIBTORCH.split(\'/share/cmake\')[0], \'lib\') : require(\'path\').dirname(require(\'fs\').realpathSync([\'/usr/lib/x86_64-linux-gnu\', \'/usr/lib/aarch64-linux-gnu\', \'/usr/lib\', \'/usr/local/lib\'].map((d) => d + \'/libtorch.so\').find((f) => require(\'fs\').existsSync(f)) || \'/usr/lib/libtorch.so\'))")',
    # The C++ standard, as in CMakeLists.txt: C++20 for libtorch >= 2.10 (whose headers require it), else C++17.
    'cxx_std%': '<!(node -p "const p = require(\'path\'), fs = require(\'fs\'); const inc = process.env.LIBTORCH ? p.resolve(process.env.LIBTORCH.split(\'/share/cmake\')[0], \'include\') : \'/usr/include\'; const v = fs.readFileSync(p.join(inc, \'torch/csrc/api/include/torch/version.h\'), \'utf8\'); const n = (k) => Number((new RegExp(\'TORCH_VERSION_\' + k + \' ([0-9]+)\').exec(v) || [0, 0])[1]); n(\'MAJOR\') * 100 + n(\'MINOR\') >= 210 ? \'c++20\' : \'c++17\'")',
  },
  'targets': [
    {
      'target_name': 'dinov3',
      'sources': [
        '<!@(node -p "require(\'fs\').readdirSync(\'native/src\', { recursive: true }).filter((f) => f.endsWith(\'.cc\')).sort().map((f) => \'native/src/\' + f.split(require(\'path\').sep).join(\'/\')).join(\' \')")',
      ],
      'include_dirs': [
        '<!(node -p "require(\'node-addon-api\').include_dir")',
        'native/src',
        '<(torch_include)',
        '<(torch_include)/torch/csrc/api/include',
      ],
      'defines': [
        'NAPI_VERSION=8',
        'NAPI_CPP_EXCEPTIONS',
        'NODE_ADDON_API_DISABLE_DEPRECATED',
        'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',
        '_GLIBCXX_USE_CXX11_ABI=1',
      ],
      # node-gyp's defaults turn off exceptions and RTTI; libtorch and node-addon-api's C++ exceptions need both.
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-std=gnu++14'],
      # `-include pch.h` mirrors CMake's target_precompile_headers (force-included into every source).
      'cflags_cc': ['-std=<(cxx_std)', '-fexceptions', '-frtti', '-include', 'pch.h', '-Wall', '-Wno-unused-parameter',
                    '-Wno-unused-variable', '-Wno-missing-field-initializers'],
      'libraries': [
        '-L<(torch_libdir)',
        '-Wl,-rpath,<(torch_libdir)',
        '-ltorch',
        '-ltorch_cpu',
        '-lc10',
      ],
      'conditions': [
        # CUDA code paths are compiled when the libtorch has CUDA (as in CMakeLists.txt).
        ['<!(node -p "require(\'fs\').existsSync(\'<(torch_libdir)/libtorch_cuda.so\') ? 1 : 0")==1', {
          'defines': ['DINOV3_WITH_CUDA=1'],
          'include_dirs': ['<!(node -p "require(\'path\').resolve(process.env.CUDA_HOME || \'/usr/local/cuda\', \'include\')")'],
          'libraries': ['-ltorch_cuda', '-lc10_cuda'],
        }],
      ],
    },
  ],
}
