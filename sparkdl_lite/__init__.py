"""sparkdl_lite: TensorFlow models as Spark ML stages, for distributed tuning and deployment at scale."""
__version__ = "0.2.0"

from sparkdl_lite.classifier import TFClassificationModel, TFClassifier  # noqa: E402
from sparkdl_lite.core.graph import TFGraph  # noqa: E402
from sparkdl_lite.core.keras_model import expand_layer_params  # noqa: E402
from sparkdl_lite.images import images_from_numpy, read_images  # noqa: E402
from sparkdl_lite.search import HalvingSearch, HalvingSearchModel  # noqa: E402
from sparkdl_lite.transformers import TFImageTransformer, TFTransformer  # noqa: E402

__all__ = ["TFGraph", "TFTransformer", "TFImageTransformer", "TFClassifier", "TFClassificationModel",
           "HalvingSearch", "HalvingSearchModel", "images_from_numpy", "read_images", "expand_layer_params",
           "__version__"]
