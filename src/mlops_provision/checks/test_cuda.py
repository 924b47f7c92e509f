"""Checks for the `cuda` role (hosts of group gpu_workers): each pinned toolkit present at its
version, the default one selected; where a GPU is present, a CUDA job runs.
Reads the role's local fact (/etc/ansible/facts.d/cuda.fact)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.roles("cuda")

VECTOR_ADD = r"""
#include <cstdio>
__global__ void add(int n, const float *a, float *b) { int i = threadIdx.x; if (i < n) b[i] += a[i]; }
int main() {
  const int n = 256; float *a, *b;
  if (cudaMallocManaged(&a, n * sizeof(float)) != cudaSuccess) { puts("cudaMallocManaged failed"); return 2; }
  cudaMallocManaged(&b, n * sizeof(float));
  for (int i = 0; i < n; i++) { a[i] = i; b[i] = 1; }
  add<<<1, n>>>(n, a, b);
  if (cudaDeviceSynchronize() != cudaSuccess) { puts("kernel failed"); return 3; }
  for (int i = 0; i < n; i++) if (b[i] != i + 1) { puts("wrong result"); return 4; }
  puts("ok"); return 0;
}
"""


@pytest.fixture(scope="module")
def cuda(host, node) -> dict:
    if "gpu_workers" not in node.groups:
        pytest.skip("not in group gpu_workers: no CUDA toolkit here")
    driver = host.file(node["nvidia_driver_local_fact"])
    if driver.exists and "skipped" in json.loads(driver.content_string):
        pytest.skip(f"the GPU layer skips this host: {json.loads(driver.content_string)['skipped']}")
    fact = node["cuda_local_fact"]
    f = host.file(fact)
    assert f.exists, f"{fact} is missing: the cuda role has not converged this node"
    return json.loads(f.content_string)


def test_toolkits_at_pinned_versions(host, cuda):
    """each pinned CUDA toolkit present at its version"""
    wrong = {}
    for version, nvcc in zip(cuda["toolkits"], cuda["nvcc"], strict=True):
        out = host.run(f"{nvcc} --version")
        if out.rc != 0 or f"release {version}," not in out.stdout:
            wrong[version] = (out.stdout or out.stderr).strip().splitlines()[-1:] or "no nvcc"
    assert not wrong, f"toolkits not at their pinned version: {wrong}"


def test_default_toolkit(host, cuda):
    """the default toolkit is the one selected"""
    if cuda["source"] == "debian":
        assert cuda["toolkits"] == [cuda["default"]]
        assert host.file("/usr/bin/nvcc").exists
    else:
        target = host.file("/usr/local/cuda").linked_to
        assert target == f"/usr/local/cuda-{cuda['default']}", f"/usr/local/cuda -> {target}"


def test_cuda_job_runs(host, node, cuda):
    """a CUDA job runs on the GPU"""
    fact = host.file(node["nvidia_driver_local_fact"])
    driver = json.loads(fact.content_string) if fact.exists else {}
    if int(driver.get("device_count", 0)) == 0:
        pytest.skip("no NVIDIA PCI device on this node: the CUDA job cannot run (not verified here)")
    nvcc = cuda["nvcc"][cuda["toolkits"].index(cuda["default"])]
    tmp = host.check_output("mktemp -d").strip()
    try:
        host.run(f"cat > {tmp}/add.cu <<'EOF'\n{VECTOR_ADD}\nEOF")
        build = host.run(f"{nvcc} -o {tmp}/add {tmp}/add.cu")
        assert build.rc == 0, build.stderr
        run = host.run(f"{tmp}/add")
        assert run.rc == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
    finally:
        host.run(f"rm -rf {tmp}")
