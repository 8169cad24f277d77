"""Feature vectors: fixed length (== schema), finite, spec-relative, pure (no TVM needed)."""
import math
import sys

import numpy as np
import pytest

from costpass import features as F
from costpass import spec
from costpass.records import KernelDemand, LaunchShape


def kernel(name="k", blocks=1024, threads=256, fma=1e6, loads=2e5, sectors=8e5, tensor=0.0, dram=64e6,
           barrier=0.0, smem=0):
    warps = blocks * threads / 32
    return KernelDemand(
        name=name,
        launch=LaunchShape(grid=(blocks, 1, 1), block=(threads, 1, 1), static_smem_bytes=smem,
                           registers_per_thread=40),
        inst={"fp32_fma": fma, "ld_global": loads, "st_global": warps, "int_alu": 3 * warps,
              "imad": 2 * warps, "barrier": barrier, "ld_shared": 4 * warps, "st_shared": warps},
        tensor_flops={"fp16": tensor} if tensor else {},
        memory={"global_load_bytes": loads * 128, "global_store_bytes": warps * 128,
                "global_load_sectors": sectors, "global_store_sectors": warps * 4,
                "shared_load_wavefronts": 8 * warps, "shared_store_wavefronts": warps,
                "shared_ideal_wavefronts": 4 * warps, "dram_bytes": dram, "l2_bytes": 2 * dram},
        flops=fma * 64)


def test_length_matches_schema_and_finite():
    g = spec.load("h100")
    for ds in ([kernel()], [kernel(), kernel("k2", blocks=3, threads=1024, tensor=1e10, dram=0.0)],
               [kernel(blocks=1, threads=32, fma=0, loads=0, sectors=0, dram=0.0)]):
        x = F.featurize(ds, g)
        assert x.shape == (len(F.FEATURE_SCHEMA.names),)
        assert np.all(np.isfinite(x))
    assert len(set(F.FEATURE_SCHEMA.names)) == len(F.FEATURE_SCHEMA.names)


def test_aggregation_over_kernels():
    g = spec.load("h100")
    a, b = kernel("a"), kernel("b", fma=5e8)
    x1, x2 = F.featurize([a], g), F.featurize([a, b], g)
    i = F.FEATURE_SCHEMA.index
    assert x1[i("n_kernels")] == 1 and x2[i("n_kernels")] == 2
    # the estimate is the sum of the kernels' estimates
    from costpass import bounds
    est = bounds.analyze(a, g).estimate_us + bounds.analyze(b, g).estimate_us
    assert F.estimate_us_of(x2)[0] == pytest.approx(est, rel=1e-9)
    # the dominant kernel (b, FMA-heavy) sets the one-hot bottleneck
    assert x2[i("bottleneck_fma")] == 1.0
    assert sum(x2[i(f"bottleneck_{p}")] for p in F.PIPES) == 1.0
    assert sum(x2[i(f"est_share_{p}")] for p in F.PIPES) == pytest.approx(1.0)


def test_relative_to_the_gpu_spec():
    """The same kernel on a GPU with more SMs and bandwidth: smaller time bounds, a different ridge point."""
    d = [kernel(blocks=4096)]
    h100, a100 = F.featurize(d, spec.load("h100")), F.featurize(d, spec.load("a100"))
    i = F.FEATURE_SCHEMA.index
    assert h100[i("log_estimate_us")] < a100[i("log_estimate_us")]
    assert h100[i("log2_ai_over_ridge")] != a100[i("log2_ai_over_ridge")]
    # coalescing and bank conflicts are properties of the kernel, not of the GPU
    assert h100[i("sectors_per_load_request")] == a100[i("sectors_per_load_request")] == 4.0
    assert h100[i("shared_wavefronts_over_ideal")] == pytest.approx(9 / 4)


def test_schema_hash_stable_and_sensitive():
    h = F.schema_hash()
    assert len(h) == 16 and h == F.schema_hash()
    other = F.FeatureSchema(F.FEATURE_SCHEMA.version, F.FEATURE_SCHEMA.names[:-1])
    assert F.schema_hash(other) != h


def test_no_kernel_refused():
    with pytest.raises(ValueError):
        F.featurize([], spec.load("h100"))


def test_features_module_does_not_import_tvm():
    import subprocess
    code = ("import sys; import costpass.features, costpass.model; "
            "assert 'tvm' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tvm'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_pressure_features():
    """reg_need_over_cap: the estimated register demand (spilled part included) over what the block size
    leaves per thread on the GPU; private bytes and the serial chain as log2."""
    g = spec.load("h100")
    i = F.FEATURE_SCHEMA.index
    small = kernel(threads=256)
    x = F.featurize([small], g)
    # 40 registers, 256 threads: 65536 / 256 = 256 -> capped at 255 registers per thread
    assert x[i("reg_need_over_cap")] == pytest.approx(40 / 255)
    assert x[i("log2_local_bytes_per_thread")] == 0.0
    big = kernel(threads=1024)
    big.launch.registers_per_thread = 64
    big.launch.local_bytes_per_thread = 360            # ~90 spilled registers
    big.serial_iterations = 255.0
    y = F.featurize([big], g)
    assert y[i("reg_need_over_cap")] == pytest.approx((64 + 90) / 64)   # 65536 / 1024 = 64 per thread
    assert y[i("log2_local_bytes_per_thread")] == pytest.approx(math.log2(361))
    assert y[i("log2_serial_iterations")] == pytest.approx(8.0)
    # the cap comes from the GPU's register file: a GPU with half of it doubles the pressure
    half = spec.load("h100")
    half.limits["registers_per_sm"] = 32768
    assert F.featurize([big], half)[i("reg_need_over_cap")] == pytest.approx((64 + 90) / 32)
