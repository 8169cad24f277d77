"""One nvcc command for every place the measuring code compiles CUDA source (costpass.measure.nvcc_cmd)."""
import os
import subprocess

from costpass.measure import bundle, gpu_run, nvcc_cmd


def test_command_and_flags(monkeypatch):
    monkeypatch.setenv("NVCC", "/opt/x/nvcc")
    assert nvcc_cmd.command("k.cu", "k.cubin", "sm_90a") == ["/opt/x/nvcc", "-O3", "-cubin", "-arch=sm_90a",
                                                             "-o", "k.cubin", "k.cu"]
    assert bundle.NVCC_FLAGS == ["-O3", "-cubin", "-arch=sm_90a"]
    script = os.path.join(os.path.dirname(nvcc_cmd.__file__), "nvcc_cmd.py")
    out = subprocess.run(["python3", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == list(nvcc_cmd.FLAGS)      # what compile_missing.sh reads


def test_gpu_run_cache_compiles_with_the_one_command(tmp_path, monkeypatch):
    seen = []

    def fake_run(cmd, **_kw):
        seen.append(cmd)
        with open(cmd[cmd.index("-o") + 1], "wb") as f:
            f.write(b"CUBIN")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setenv("NVCC", "/opt/x/nvcc")
    monkeypatch.setattr(gpu_run.subprocess, "run", fake_run)
    cache = gpu_run.CubinCache(None, "sm_90a", nvcc_dir=str(tmp_path))
    assert cache('extern "C" __global__ void main_kernel() {}') == b"CUBIN"
    cmd = seen[0]
    assert cmd[:4] == ["/opt/x/nvcc", "-O3", "-cubin", "-arch=sm_90a"] and cmd[-1].endswith("k.cu")


def test_run_relax_records_how_its_kernels_were_compiled(tmp_path, monkeypatch):
    from costpass.measure import ms_gpu, run_relax

    monkeypatch.delenv(ms_gpu.CACHE_ENV, raising=False)
    assert run_relax.cubin_build() == {"compiler": "nvcc", "flags": list(nvcc_cmd.FLAGS)}
    monkeypatch.setenv(ms_gpu.CACHE_ENV, str(tmp_path))
    assert run_relax.cubin_build()["compiler"] == "nvcc"          # a cache of nvcc cubins says nothing
    (tmp_path / "BUILD.json").write_text('{"compiler": "tvm", "mode": "nvrtc"}')
    assert run_relax.cubin_build() == {"compiler": "tvm", "mode": "nvrtc"}
