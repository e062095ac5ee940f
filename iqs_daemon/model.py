"""The quality model: one ONNX Runtime session per process, reused for every photo.

Everything the code needs to know about the model is read from the ONNX file's own
metadata (``metadata_props``), written at export by ``training/export.py``:

``iqs.name`` / ``iqs.version``
    shown to the user and written into every verdict.
``iqs.inputs``
    JSON: {input name: {"size": S, "view": "whole"|"detail", "min_short_side": N}};
    every input is uint8 RGB, NHWC, S x S; the graph normalises.
``iqs.outputs``
    JSON: {output name: meaning}; ``score`` is 0..100, each diagnostic 0..1,
    ``embedding`` an L2-normalised vector.
``iqs.diagnostics``
    JSON list of the diagnostic output names (blur, noise, ...).
``iqs.thresholds``
    JSON: default verdict thresholds (``reject_below``, ``accept_from``, ``stars``,
    ``reason_threshold``), fitted on the training split.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import vocabulary
from .errors import ModelError
from .records import Scores

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "iqs-quality.onnx"
#: sha256 of the shipped model; checked at load so a damaged install is caught early.
DEFAULT_MODEL_SHA256_FILE = "iqs-quality.onnx.sha256"


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: int
    view: str  # "whole" or "detail"
    min_short_side: int = 0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    path: Path
    sha256: str
    inputs: tuple[InputSpec, ...]
    outputs: dict[str, str]
    diagnostics: tuple[str, ...]
    thresholds: dict[str, Any]

    @property
    def model_label(self) -> str:
        """"name version": what the state and the status call the model (a pick label
        is a photo's Rejected, Pending or Accepted)."""
        return f"{self.name} {self.version}"

    @property
    def min_short_side(self) -> int:
        """The decoded resolution the detail view needs (0: whatever is cheapest)."""
        return max((spec.min_short_side for spec in self.inputs), default=0)


def default_model_path() -> Path:
    try:
        return Path(str(resources.files("iqs_daemon.models") / DEFAULT_MODEL_NAME))
    except ModuleNotFoundError:  # run from a source checkout: models/ is beside the package
        return Path(__file__).resolve().parents[1] / "models" / DEFAULT_MODEL_NAME


def expected_sha256(path: Path) -> str | None:
    """The published digest beside the model file (``NAME.sha256``), if any."""
    digest_file = path.with_name(path.name + ".sha256")
    if digest_file.is_file():
        return digest_file.read_text(encoding="utf-8").split()[0].strip()
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_info(path: Path, meta: dict[str, str], sha256: str) -> ModelInfo:
    try:
        inputs = json.loads(meta["iqs.inputs"])
        info = ModelInfo(
            name=meta["iqs.name"],
            version=meta["iqs.version"],
            path=path,
            sha256=sha256,
            inputs=tuple(
                InputSpec(name, int(spec["size"]), spec["view"], int(spec.get("min_short_side", 0)))
                for name, spec in inputs.items()
            ),
            outputs=json.loads(meta["iqs.outputs"]),
            diagnostics=tuple(json.loads(meta["iqs.diagnostics"])),
            thresholds=json.loads(meta["iqs.thresholds"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        reason = f"not an iqs-daemon model (metadata {exc} missing or bad)"
        raise ModelError(f"{path}: {reason}") from exc
    strange = vocabulary.unknown(info.diagnostics)
    if strange:
        raise ModelError(f"{path}: diagnostics this version cannot write or show: "
                         f"{', '.join(strange)} (known: {', '.join(vocabulary.DIAGNOSTICS)})")
    return info


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device`` (auto | cpu | cuda), CPU always last."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError(
            "--device cuda: this onnxruntime has no CUDA support "
            "(install onnxruntime-gpu instead of onnxruntime; see README)"
        )
    return ["CPUExecutionProvider"]


def check_device(device: str, providers: list[str]) -> None:
    """onnxruntime-gpu lists CUDA even where it cannot use it (no GPU, no CUDA 12 or
    cuDNN 9 libraries): the session then falls back to the CPU with a long log. Asked
    for CUDA, that is an error in one line; with ``auto`` the CPU is what was meant."""
    if device == "cuda" and (not providers or providers[0] != "CUDAExecutionProvider"):
        raise ModelError(
            "--device cuda: onnxruntime-gpu is installed but cannot use CUDA here (no GPU "
            "found, or the CUDA 12 / cuDNN 9 libraries are missing; see README)"
        )


class QualityModel:
    """The loaded model. ``run`` takes a batch of views and returns one ``Scores`` each.

    ONNX Runtime sessions are thread-safe for ``run``; the pipeline still calls it from
    one thread so batches are not split.
    """

    def __init__(self, path: Path, *, device: str = "auto", intra_op_threads: int = 0):
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        sha256 = file_sha256(path)
        expected = expected_sha256(path)
        if expected and expected != sha256:
            raise ModelError(
                f"model file {path} is damaged: sha256 {sha256[:16]}..., expected {expected}"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if intra_op_threads:  # 0: ONNX Runtime's default, one per physical core
            options.intra_op_num_threads = intra_op_threads
        # Idle ONNX Runtime threads spin after each run, on the cores the decode threads
        # need; without spinning a batch starts a few microseconds later.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # The CPU arena keeps its high-water mark for the life of the process (1.4 GB after
        # one batch of 8 at 512 px) and was no faster here than malloc, which gives it back.
        options.enable_cpu_mem_arena = False
        # Without the arena, the memory pattern makes every run malloc one ~45 MB block,
        # which glibc maps fresh and the kernel zero-fills page by page: 11,800 page faults
        # and ~20 % more CPU per photo at batch 1 than planning nothing (2,500 faults, the
        # same peak RSS). See benchmarks/README.md.
        options.enable_mem_pattern = False
        providers = choose_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = _read_info(path, meta, sha256)
        self.providers = self.session.get_providers()
        check_device(device, self.providers)
        self._output_names = [o.name for o in self.session.get_outputs()]
        log.info("model %s on %s", self.info.model_label, ", ".join(self.providers))

    @classmethod
    def from_settings(cls, settings: Settings, *, intra_op_threads: int = 0) -> QualityModel:
        given = settings.model_path
        path = Path(given).expanduser() if given else default_model_path()
        return cls(path, device=settings.device, intra_op_threads=intra_op_threads)

    def run(self, batch: list[dict[str, np.ndarray]]) -> list[Scores]:
        """``batch``: one {input name: uint8 HxWx3 view} per photo."""
        feed = {spec.name: np.stack([views[spec.name] for views in batch])
                for spec in self.info.inputs}
        outputs = dict(zip(self._output_names, self.session.run(None, feed), strict=True))
        scores = outputs["score"].reshape(-1)
        embedding = outputs.get("embedding")
        return [
            Scores(
                score=float(np.clip(scores[i], 0.0, 100.0)),
                diagnostics={d: float(outputs[d].reshape(-1)[i]) for d in self.info.diagnostics},
                embedding=tuple(float(v) for v in embedding[i]) if embedding is not None else (),
            )
            for i in range(len(batch))
        ]

    def prepare(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """The model's views of one decoded photo (safe to call from decode threads)."""
        from .views import detail_view, whole_view, working_image

        rgb = working_image(rgb, self.info.min_short_side)
        make = {"whole": whole_view, "detail": detail_view}
        return {spec.name: make[spec.view](rgb, spec.size) for spec in self.info.inputs}
