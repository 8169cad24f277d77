"""The cost model that guides the *evolved* candidates of the dataset: the analytical estimate alone.

Used by ``python -m costpass.measure.bundle generate --evolved-only --cost-model
costpass.measure.search_model:analytical`` so that the good end of the schedule distribution, where
search decides, is represented in the measured data. It has no learned part (nothing measured feeds it),
so the dataset it produces does not depend on any model trained on that dataset.
"""
from __future__ import annotations


def analytical(workload=None, gpu: str = "h100"):
    """A MetaSchedule cost model scoring candidates by 1 / (costpass analytical estimate)."""
    from costpass.metaschedule import CostModel
    return CostModel(gpu=gpu, model_path="none", online=False)
