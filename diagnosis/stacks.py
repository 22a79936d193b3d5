"""Read py-spy stack samples: what the main thread of a job was doing, by category.

Each main-thread stack is put in one category by the frames it holds. Context categories win over
what the innermost frame does: a `torch.save` that pickles is a checkpoint, a DataLoader inside an
`evaluate()` is evaluation, anything under the import machinery is start-up. Otherwise the
innermost frame that means something decides (a `time.sleep`, a `cuda.synchronize`, a NCCL wait).
"""

from __future__ import annotations

import functools
import re
from collections import Counter

from nodetune.probes.pystacks import FoldedStack, StackSample

from .findings import StackEvidence

# Frames that mean "waiting for or producing the next batch": the DataLoader's iterator, dataset
# __getitem__, worker-queue waits, and file reads/decoding done in Python.
_LOADING_FUNCS = re.compile(
    r"^(?:\S+\.)?(__next__|_next_data|_get_data|_try_get_data|_process_data|fetch|__getitem__|__getitems__|"
    r"read\w*|load\w*|decode\w*|_recv\w*|recv\w*|get|poll|_poll|wait)\b"
)
_LOADING_FILES = ("torch/utils/data/", "multiprocessing/queues.py", "multiprocessing/connection.py",
                  "queue.py", "PIL/", "imageio/", "cv2", "datasets/", "webdataset/")

# Categories whose host time overlaps GPU work (the thread launches kernels or waits for them to
# finish): they never explain a GPU's idle time.
GPU_FACING = ("synchronization", "gpu_dispatch")
# Every category a main-thread stack can fall in; "other" is Python work none of these patterns know.
CATEGORIES = ("startup", "checkpoint", "evaluation", "data_loading", "communication", "synchronization",
              "gc", "sleeping", "gpu_dispatch", "other")

# Serialization and durable writes: torch.save, pickle, safetensors, numpy save, fsync, file writes.
_CKPT_FILES = ("torch/serialization.py", "pickle.py", "safetensors/", "torch/distributed/checkpoint/", "h5py/",
               "orbax/")
_CKPT_FUNCS = re.compile(r"^(?:\S+\.)?(save\w*|_save\w*|dump\w*|_dump\w*|\w*fsync\w*|fdatasync|write_\w*|"
                         r"\w*checkpoint\w*|persist\w*)$")
# Start-up: the import machinery, CUDA/NCCL initialisation, building the model and its weights
# (construction, initialisation, loading a state dict, moving it to the GPU), compiling it.
_STARTUP_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>", "importlib/__init__.py",
                  "site-packages/setuptools/", "pkg_resources/", "torch/nn/init.py", "torch/_dynamo/convert_frame.py",
                  "torch/_inductor/compile_fx.py", "torch/_inductor/codecache.py", "torch/_inductor/async_compile.py",
                  "torch/_inductor/select_algorithm.py", "torch/_inductor/autotune_process.py", "triton/compiler/",
                  "triton/runtime/autotuner.py", "torch/_subclasses/fake_tensor.py")
_STARTUP_FUNCS = re.compile(r"^(?:\S+\.)?(_find_and_load\w*|_load_unlocked|exec_module|import_module|_lazy_init|"
                            r"_call_with_frames_removed|init_process_group|from_pretrained|from_config|_from_config|"
                            r"create_model|build_model|_initialize\w*|post_init|_init_weights|init_weights|"
                            r"tie_weights|reset_parameters|load_state_dict|_load_from_state_dict|load_checkpoint)$")
# Constructors of model libraries' modules and of datasets: building the model and the index of
# its data before the first step.
_MODEL_FILES = ("torch/nn/modules/", "torchvision/datasets/", "datasets/arrow_dataset.py", "webdataset/",
                "transformers/models/", "transformers/modeling_utils.py", "timm/models/",
                "timm/layers/", "torchvision/models/", "lightning/pytorch/core/module.py")
# Weights read from disk or moved to the GPU as a whole model.
_WEIGHT_FUNCS = {"torch/serialization.py": ("load", "_load", "_legacy_load", "load_tensor", "persistent_load"),
                 "safetensors/torch.py": ("load_file", "load", "_view2torch"),
                 "torch/nn/modules/module.py": ("to", "cuda", "_apply", "load_state_dict")}
_EVAL_FUNCS = re.compile(r"^(?:\S+\.)?(eval\w*|_eval\w*|validat\w*|_validat\w*|test_step|val_step|compute_metrics|"
                         r"metric\w*|score\w*|accuracy\w*)$")
_EVAL_FILES = ("sklearn/", "torchmetrics/", "evaluate/", "scipy/")
_COMM_FILES = ("torch/distributed/", "torch/nn/parallel/distributed.py", "deepspeed/comm/", "horovod/", "mpi4py/")
_SYNC_FUNCS = re.compile(r"^(?:\S+\.)?(synchronize|item|tolist|cpu|numpy|_local_scalar_dense|wait_stream|"
                         r"record_stream|elapsed_time|query)$")
# py-spy shows Python frames only: time.sleep itself is invisible, the function that calls it is not.
_SLEEP_FUNCS = re.compile(r"^(?:\S+\.)?(sleep|_sleep|\w+_sleep|sleep_\w+)$")
_WAIT_FUNCS = re.compile(r"^(?:\S+\.)?(select|epoll\w*|pause|sigwait\w*|wait)$")
_DISPATCH_FILES = ("torch/nn/", "torch/_tensor", "torch/optim/", "torch/autograd/", "torch/functional.py",
                   "torch/_ops.py", "torch/amp/", "torch/cuda/amp/", "torch/_dynamo/", "torch/_inductor/",
                   "torch/utils/checkpoint.py")


def _split(frame: str) -> tuple[str, str]:
    func, _, rest = frame.partition(" (")
    return func, rest.rstrip(")")


# The agent diagnoses every 15 s a window whose stack slices it mostly judged before, and a job's
# stacks repeat: classifications are remembered (bounded: a few MB at most, whatever the uptime).
@functools.lru_cache(maxsize=4096)
def is_loading_frame(frame: str) -> bool:
    """A frame "func (file)" that belongs to input loading."""
    func, file = _split(frame)
    if any(f in file for f in _LOADING_FILES):
        return True
    # Generic names (get/wait/read) count only outside torch's own compute paths.
    return bool(_LOADING_FUNCS.match(func)) and not file.startswith(("torch/nn/", "torch/_tensor", "torch/optim/",
                                                                     "torch/distributed/", "torch/cuda/"))


def _is_checkpoint(func: str, file: str) -> bool:
    if any(f in file for f in _CKPT_FILES):
        return "load" not in func  # unpickling, torch.load: reading, not writing a checkpoint
    # torch/utils/checkpoint.py is activation checkpointing: recomputation on the GPU, not a save.
    return bool(_CKPT_FUNCS.match(func)) and not file.startswith(("torch/utils/data/", "torch/utils/checkpoint.py"))


def _is_startup(func: str, file: str) -> bool:
    if any(f in file for f in _STARTUP_FILES) or bool(_STARTUP_FUNCS.match(func)):
        return True
    short = func.rsplit(".", 1)[-1]
    if short == "__init__" and any(f in file for f in _MODEL_FILES):
        return True
    return any(file.endswith(f) and short in names for f, names in _WEIGHT_FUNCS.items())


def _is_eval(func: str, file: str) -> bool:
    return any(f in file for f in _EVAL_FILES) or (bool(_EVAL_FUNCS.match(func)) and not file.startswith("torch/"))


def _is_sleep(func: str, file: str) -> bool:
    return bool(_SLEEP_FUNCS.match(func)) or (bool(_WAIT_FUNCS.match(func)) and ("selectors.py" in file
                                                                             or "threading.py" in file))


def classify_stack(frames: list[str]) -> tuple[str, str | None]:
    """(category, the frame that decided it) for one stack, outermost frame first."""
    return _classify(tuple(frames))


def _has_loading(frames: list[str]) -> bool:
    return _any_loading(tuple(frames))


@functools.lru_cache(maxsize=1024)
def _any_loading(frames: tuple[str, ...]) -> bool:
    return any(is_loading_frame(f) for f in frames)


@functools.lru_cache(maxsize=1024)
def _classify(frames: tuple[str, ...]) -> tuple[str, str | None]:
    parsed = [_split(f) for f in frames]
    # Inside the DataLoader's iteration everything is loading input (a dataset that torch.load's
    # its samples is not starting up).
    in_loader = next((i for i, (_, file) in enumerate(parsed) if "torch/utils/data/" in file), len(parsed))
    # Context categories: anywhere in the stack, the outermost match names it (the call that
    # started the work: "torch.save" rather than the pickler's inner write).
    for i, (func, file) in enumerate(parsed[:in_loader]):
        if _is_startup(func, file):
            return "startup", frames[i]
    for i, (func, file) in enumerate(parsed[:in_loader]):
        if _is_checkpoint(func, file):
            return "checkpoint", frames[i]
    for i, (func, file) in enumerate(parsed[:in_loader]):
        if _is_eval(func, file):
            return "evaluation", frames[i]
    # Otherwise what the innermost meaningful frame does.
    for i in range(len(parsed) - 1, -1, -1):
        func, file = parsed[i]
        if func in ("collect", "gc.collect") and file in ("gc", "<built-in>", ""):
            return "gc", frames[i]
        if any(f in file for f in _COMM_FILES):
            return "communication", frames[i]
        if _SYNC_FUNCS.match(func) and (file.startswith("torch/") or file == ""):
            return "synchronization", frames[i]
        if _is_sleep(func, file) and not any(is_loading_frame(f) for f in frames[:i]):
            return "sleeping", frames[i]
        if is_loading_frame(frames[i]):
            return "data_loading", frames[i]
        if any(file.startswith(f) for f in _DISPATCH_FILES):
            return "gpu_dispatch", frames[i]
    return "other", frames[-1] if frames else None


def _main_stacks(sample: StackSample) -> list[FoldedStack]:
    return [s for s in sample.stacks if s.pid == sample.pid and (s.tid == sample.pid or s.thread == "MainThread")]


def stack_evidence(sample: StackSample) -> StackEvidence:
    """What the target process's main thread did: category shares, data-loading share, top stack."""
    ev = StackEvidence(pid=sample.pid, ok=sample.ok, reason=sample.reason, samples=sample.samples,
                       duration_s=sample.duration_s)
    if not sample.ok:
        return ev
    main = _main_stacks(sample)
    total = sum(s.count for s in main)
    ev.main_samples = total
    if total == 0:
        ev.reason = "no main-thread samples (py-spy saw only other threads)"
        return ev
    loading = sum(s.count for s in main if _has_loading(s.frames))
    ev.data_loading_share = round(loading / total, 3)
    tops: Counter[tuple[str, ...]] = Counter()
    cats: Counter[str] = Counter()
    frames: dict[str, Counter[str]] = {}
    for s in main:
        tops[tuple(s.frames)] += s.count
        cat, frame = classify_stack(s.frames)
        cats[cat] += s.count
        if frame:
            frames.setdefault(cat, Counter())[frame] += s.count
    top, n = tops.most_common(1)[0]
    ev.top_stack = list(top[-8:])  # innermost frames tell the story
    ev.top_share = round(n / total, 3)
    ev.categories = {c: round(k / total, 3) for c, k in cats.most_common()}
    ev.category_frames = {c: f.most_common(1)[0][0] for c, f in frames.items()}
    return ev
