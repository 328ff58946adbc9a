"""The core: TensorFlow, Keras, numpy and pyarrow only, never pyspark.

``graph`` (frozen graphs), ``runtime`` (per-worker graph cache, threads), ``training`` (build, fit
and freeze one configuration), ``keras_model`` (the user's Keras model: checks, archives,
layerParams, weight carry-over), ``image`` (the image-struct codec), ``datasets`` (IDX files),
``failpoint`` (test-only fail points), ``tfimport`` (one clear error without TensorFlow) and
``quiet`` (TensorFlow's start-up and log lines, the command line's logs).
Everything here can be unit-tested without a SparkSession.
"""
