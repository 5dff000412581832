"""Array transforms, composable in YAML as DaCapo's ArrayConfigs are.

Each wraps one or more :class:`~dacapo_hydra.data.array.Array` and is itself one,
so reads stay lazy: a transform reads only the ROI asked of it from its sources.
"""

from dacapo_hydra.data.transforms.binarize import BinarizeArray
from dacapo_hydra.data.transforms.concat import ConcatArray
from dacapo_hydra.data.transforms.constant import ConstantArray
from dacapo_hydra.data.transforms.crop import CropArray
from dacapo_hydra.data.transforms.logical_or import LogicalOrArray
from dacapo_hydra.data.transforms.merge_instances import MergeInstancesArray
from dacapo_hydra.data.transforms.missing_annotations import MissingAnnotationsMask
from dacapo_hydra.data.transforms.normalize import NormalizeArray
from dacapo_hydra.data.transforms.resample import ResampleArray
from dacapo_hydra.data.transforms.sum import SumArray

__all__ = [
    "BinarizeArray",
    "ConcatArray",
    "ConstantArray",
    "CropArray",
    "LogicalOrArray",
    "MergeInstancesArray",
    "MissingAnnotationsMask",
    "NormalizeArray",
    "ResampleArray",
    "SumArray",
]
