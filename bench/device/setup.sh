#!/usr/bin/env bash
# Source at the start of every device run: installs the carried wheels (py-spy, py-libnuma,
# pyudev; typer 0.29 with pydantic, which its option parsing imports; and the nodetune wheel built
# from this checkout with `pip wheel --no-deps -w .whl .`) into /tmp/site, offline, and puts them
# on the path.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NT="python3 -m nodetune.cli"
set +e
