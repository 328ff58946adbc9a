"""The core: TensorFlow, Keras, numpy and pyarrow only, never pyspark.

``graph`` (frozen graphs), ``runtime`` (per-worker graph cache, threads), ``training`` (build, fit
and freeze one configuration), ``keras_model`` (the user's Keras model: checks, archives,
layerParams, weight carry-over), ``image`` (the image-struct codec), ``datasets`` (IDX files),
``failpoint`` (test-only fail points) and ``tfimport`` (one clear error without TensorFlow).
Everything here can be unit-tested without a SparkSession.
"""
