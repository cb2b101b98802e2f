"""Where a picture model looks: Grad-CAM (Captum's ``LayerGradCam``) on the network's last convolutional
block, for the class it predicted, drawn over the picture.

The last block is found the same way for every network of the catalogue: the last of the network's own
parts (its top-level modules) that holds weights and hands on a map with more than one position
(``features`` of the small CNN, MobileNet, EfficientNet and ConvNeXt; ``layer4`` of a ResNet; ``_bn1``,
after the head convolution, of EfficientNet-Lite). The map is scaled to the picture and to 0–1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GALLERY = 24
"""Saliency maps made for the misclassified test pictures (the most confidently wrong first)."""
MAX_TEST_PICTURES = 2000


def last_conv_block(net: Any, size: int) -> tuple[str, Any]:
    """``(name, module)``: the network's last top-level part with weights and a spatial output."""
    import torch

    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(name, tuple(out.shape)))
        for name, module in net.named_children()
        if any(True for _ in module.parameters())
    ]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [name for name, shape in seen.items() if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not spatial:
        raise ValueError("this network has no convolutional block to explain")
    name = spatial[-1]  # hooks fire in the order the parts run
    return name, dict(net.named_children())[name]


def gradcam(predictor: Any, pixels: np.ndarray, classes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(heat [n, H, W] in 0–1, predicted class [n])`` for ``uint8 [n, 3, H, W]`` pictures: Grad-CAM of
    each picture's predicted class (or ``classes``), upsampled to the picture."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    net = predictor.net.float().eval()
    size = pixels.shape[-1]
    _, layer = last_conv_block(net, size)
    x = predictor.network_input(pixels).contiguous()
    with torch.no_grad():
        predicted = net(x).argmax(dim=1)
    target = torch.as_tensor(classes) if classes is not None else predicted
    attribution = LayerGradCam(net, layer).attribute(x, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(attribution.detach(), (pixels.shape[-2], size), "bilinear")
    heat = heat[:, 0].clamp(min=0).numpy()
    top = heat.reshape(len(heat), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(top > 0, heat / np.where(top > 0, top, 1), 0.0), predicted.numpy()


def overlay(picture: np.ndarray, heat: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """``uint8 [H, W, 3]``: the picture (``[3, H, W]``) with the map drawn over it, red where it looks."""
    rgb = picture.transpose(1, 2, 0).astype("float32")
    colour = np.stack([255 * heat, 64 * heat, 255 * (1 - heat) * 0.25], axis=-1)
    alpha = strength * heat[..., None]
    return np.clip(rgb * (1 - alpha) + colour * alpha, 0, 255).astype("uint8")


def explain_model(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Saliency maps of the misclassified test pictures (the kind's ``explain_model``), saved as PNG files
    in the job's folder; the result lists them with their truth and prediction."""
    from PIL import Image

    from studio.modalities.analysis import Analysis, bundle_predictor

    data = prepared.data
    test = list(data.test_idx[:MAX_TEST_PICTURES])
    folder = Path(data.folder)
    bundle, predictor = bundle_predictor(bundle_zip)
    with bundle:
        pixels = predictor.pixels([str(folder / data.relative_paths[i]) for i in test])
        progress(0.3)
        probabilities = _softmax(predictor.logits(pixels))
        truth = np.asarray(data.label_ids)[test]
        predicted = probabilities.argmax(axis=1)
        wrong = [j for j in np.argsort(-probabilities.max(axis=1)) if predicted[j] != truth[j]]
        chosen = wrong[: int(options.get("pictures", GALLERY))]
        shown = []
        for n, start in enumerate(range(0, len(chosen), 8)):
            batch = chosen[start : start + 8]
            heat, _ = gradcam(predictor, pixels[batch])
            for j, h in zip(batch, heat, strict=True):
                name = f"gradcam_{len(shown):03d}.png"
                Image.fromarray(overlay(pixels[j], h)).save(out / name)
                shown.append(
                    {
                        "image": data.relative_paths[test[j]],
                        "source": data.sources[test[j]],
                        "file": name,
                        "label": data.classes[truth[j]],
                        "predicted": data.classes[predicted[j]],
                        "probability": float(probabilities[j].max()),
                    }
                )
            progress(0.3 + 0.65 * min(1.0, (n + 1) * 8 / max(1, len(chosen))))
    layer, _ = last_conv_block(predictor.net, pixels.shape[-1])
    sentence = (
        f"Saliency maps of the {len(shown)} misclassified test pictures shown (Grad-CAM on the network's "
        f"last convolutional block, '{layer}')."
        if shown
        else "The model got every test picture right: there are no mistakes to explain."
    )
    result = {"pictures": shown, "layer": layer, "wrong": len(wrong), "tested": len(test)}
    return Analysis(result, sentence, {"explain/misclassified": float(len(wrong))})


def explain_row(prepared: Any, bundle_zip: Path, spec: Any, options: dict[str, Any], progress: Any, out: Path):
    """Saliency maps of the pictures in ``options["pictures"]`` (paths), for the Predict page's cards."""
    from PIL import Image

    from studio.modalities.analysis import Analysis, bundle_predictor

    paths = [str(p) for p in options.get("pictures", [])][:60]
    bundle, predictor = bundle_predictor(bundle_zip)
    shown = []
    with bundle:
        for start in range(0, len(paths), 8):
            batch = paths[start : start + 8]
            pixels = predictor.pixels(batch)
            heat, predicted = gradcam(predictor, pixels)
            for path, picture, h, k in zip(batch, pixels, heat, predicted, strict=True):
                name = f"gradcam_{len(shown):03d}.png"
                Image.fromarray(overlay(picture, h)).save(out / name)
                shown.append({"picture": Path(path).name, "file": name, "predicted": predictor.target["classes"][k]})
            progress(0.1 + 0.85 * min(1.0, (start + 8) / max(1, len(paths))))
    return Analysis({"pictures": shown}, f"Saliency maps of {len(shown)} pictures.")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
