"""Build of ``geolayers._C`` from ``csrc/``.

CPU sources are always compiled. CUDA sources are added when both a CUDA toolkit
(``CUDA_HOME``) and a CUDA build of torch are present, or when ``GEOLAYERS_FORCE_CUDA=1``.
``GEOLAYERS_DEBUG=1`` compiles without optimisation and with debug symbols.
``GEOLAYERS_NO_EXT=1`` skips the extension (the package then runs on its references).
"""

from __future__ import annotations

import glob
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _extensions():
    if os.environ.get("GEOLAYERS_NO_EXT", "0") == "1":
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    debug = os.environ.get("GEOLAYERS_DEBUG", "0") == "1"
    force_cuda = os.environ.get("GEOLAYERS_FORCE_CUDA", "0") == "1"
    use_cuda = force_cuda or (torch.version.cuda is not None and CUDA_HOME is not None)

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # at::parallel_for is an inline OpenMP region in torch's CPU builds: without -fopenmp it
    # silently runs on one thread. The loader reuses the libgomp that torch already loaded.
    # sqrt setting errno, and divisions that might trap, keep GCC from vectorising the loops of
    # the distance kernels; geolayers reads neither errno nor floating-point traps.
    extra = {"cxx": [*opt, "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]}
    # py_limited_api=True makes BuildExtension define Py_LIMITED_API itself (3.10 API).
    define_macros = []
    ext_cls = CppExtension
    if use_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        extra["nvcc"] = [*opt, "-lineinfo"]
        define_macros.append(("WITH_CUDA", None))
        ext_cls = CUDAExtension
    ext = ext_cls(
        name="geolayers._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
        define_macros=define_macros,
        py_limited_api=True,
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()
setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
