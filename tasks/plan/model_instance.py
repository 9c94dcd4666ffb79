"""The joint instance of a model spec on a target: profile it, get its layer sensitivities (Hutchinson on data
when the model ships data or the user gives some, ZeroQ synthetic inputs otherwise), build the instance."""

from __future__ import annotations

from typing import Any, Sequence

from forgeflow.tasks.plan.instance import PlanInstance, build_instance
from forgeflow.tasks.plan.target import HardwareTarget

BUNDLED_DATA = ("forgeflow:digits_cnn", "forgeflow:digits_mlp")


def model_instance(spec: str, target: HardwareTarget, *, input_shape: Sequence[int] | None = None,
                   dataset: str | None = None, k: int | None = None, budget: float | None = None,
                   bits: Sequence[int] = (8, 4), samples: int = 64, epochs: int = 30, seed: int = 0
                   ) -> tuple[PlanInstance, dict[str, Any]]:
    """(instance, info). ``info`` says which sensitivity source was used and, with data, the float accuracy."""
    import torch

    from forgeflow.tasks.models.spec import default_input_shape, resolve_model
    from forgeflow.tasks.plan.sensitivity import sensitivities_for
    from forgeflow.tasks.profiling.profile import profile_model

    torch.manual_seed(seed)
    model = resolve_model(spec)
    shape = tuple(input_shape) if input_shape else tuple(default_input_shape(spec))
    info: dict[str, Any] = {}
    batches = None
    if dataset is not None or spec in BUNDLED_DATA:
        from forgeflow.tasks.models.digits import train_classifier
        from forgeflow.tasks.quantize.apply import evaluate_accuracy
        from forgeflow.tasks.quantize.pipeline import load_data

        xtr, ytr, xte, yte = load_data(dataset, seed)
        model = train_classifier(model, xtr, ytr, epochs=epochs, seed=seed)
        info["float_accuracy"] = evaluate_accuracy(model, xte, yte)
        info["dataset"] = dataset or "sklearn:digits"
        batches = [(xtr[i:i + 256], ytr[i:i + 256]) for i in range(0, min(len(xtr), 1024), 256)]
    model.eval()
    graph = profile_model(spec, input_shape=shape, model=model)
    sens, source = sensitivities_for(model, shape, batches=batches, bits=tuple(bits), samples=samples, seed=seed)
    info["sensitivity_source"] = source + (f" ({info['dataset']})" if batches is not None else "")
    info["layers"] = len(sens)
    inst = build_instance(graph, sens, target, k=k, budget=budget, sensitivity_source=info["sensitivity_source"])
    return inst, info
