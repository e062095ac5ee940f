"""The 2.0 blend (training/export.py): one trunk, two tails, and 1.1's heads read back."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the training extra (.[train])")
pytest.importorskip("efficientnet_lite_pytorch", reason="the backbone wheel is the training extra")

from training.backbone import MLSPBackbone, load_efficientnet_lite  # noqa: E402
from training.export import BlendedModel, QualityModel, heads_from_onnx  # noqa: E402
from training.head import Ensemble, QualityHead  # noqa: E402
from training.signals import PixelSignals  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "iqs-quality.onnx"


@torch.no_grad()
def test_the_blend_is_each_half_at_its_ends_and_the_frozen_embedding_throughout():
    torch.manual_seed(0)
    frozen = MLSPBackbone(load_efficientnet_lite("lite0")).eval()
    tuned = copy.deepcopy(frozen)
    for parameter in tuned.net._blocks[14].parameters():
        parameter.add_(0.05 * torch.randn_like(parameter))  # a "fine-tuned" tail
    dim = 2 * frozen.feature_dim + 2 * 37
    heads = Ensemble([QualityHead(torch.zeros(dim), torch.ones(dim)) for _ in range(2)]).eval()
    tuned_heads = copy.deepcopy(heads)
    image = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    detail = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    signals = PixelSignals()
    alone_frozen = QualityModel(frozen, heads, signals).eval()(image, detail)
    alone_tuned = QualityModel(tuned, tuned_heads, signals).eval()(image, detail)
    assert not torch.allclose(alone_frozen[0], alone_tuned[0])
    for weight, expected in ((0.0, alone_frozen), (1.0, alone_tuned)):
        blend = BlendedModel(frozen, tuned, 13, heads, tuned_heads, signals, weight).eval()
        out = blend(image, detail)
        for got, want in zip(out[:-1], expected[:-1], strict=True):
            assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(out[-1], alone_frozen[-1])  # the embedding stays 1.1's


@torch.no_grad()
def test_heads_read_back_from_the_int8_file_compute_what_the_file_computes():
    import onnxruntime as ort

    heads = heads_from_onnx(SHIPPED)
    assert len(heads.heads) == 3
    # 2 x 4,128 backbone features per photo; 1.1's heads also took 2 x 37 measured signals
    signals = PixelSignals() if heads.heads[0].mean.numel() > 2 * 4128 else None
    model = QualityModel(MLSPBackbone(load_efficientnet_lite("lite0")), heads, signals)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2, 512, 512, 3), dtype=np.uint8)
    detail = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    shipped = session.run(["score"], {"image": image, "detail": detail})[0]
    ours = model.eval()(torch.from_numpy(image), torch.from_numpy(detail))[0].numpy()
    # The file quantises the heads' activations too (dynamic int8), torch does not.
    assert np.abs(shipped - ours).max() < 0.5  # 0.05 here
