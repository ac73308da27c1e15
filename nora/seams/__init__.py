"""The seams a trainer trains through: where violations act and what the monitor reads.

Named after Lightning Fabric's vocabulary where it fits, so a user recognises them.
"""
from nora.seams.checkpoints import CheckpointSeam, audit_contents
from nora.seams.evaluation import EvaluationSeam
from nora.seams.generators import Generators
from nora.seams.loader import LoaderSeam
from nora.seams.optim import OptimizerSeam
from nora.seams.precision import Precision

__all__ = ["CheckpointSeam", "EvaluationSeam", "Generators", "LoaderSeam", "OptimizerSeam",
           "Precision", "audit_contents"]
