"""costpass: a GPU pipeline-demand performance model inside Apache TVM."""
__version__ = "0.1.0"


def CostModel(gpu: str = "h100", model_path: str | None = None, **kw):  # noqa: N802 - a class factory
    """MetaSchedule cost model backed by costpass (see ``costpass.metaschedule``)."""
    from .metaschedule import CostModel as _CostModel
    return _CostModel(gpu=gpu, model_path=model_path, **kw)


def predict(mod, gpu: str = "h100", model_path: str | None = None) -> float:
    """Predicted latency (ms) of a scheduled TensorIR module on ``gpu`` (see ``costpass.metaschedule.predict``)."""
    from .metaschedule import predict as _predict
    return _predict(mod, gpu, model_path=model_path)
