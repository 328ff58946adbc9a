"""A frozen graph over 128 MiB transforms, saves and loads: the check tests/connect runs on Spark Connect.

Over gRPC's 128 MiB message limit: on Connect the engine ships it as a content-named artifact and
writes it as Parquet byte chunks, never inside one message. The classic suite does not run it: a
classic session has no such limit (the graph is a broadcast, the files are written through the same
chunked ``engine.write_bytes`` test_engine checks at three chunks), and the 136 MB graph took 66-69 s
of a suite that must stay under 15 minutes.
"""
import numpy as np
import pandas as pd


def check_big_graph(spark, tmp_path):
    import tensorflow as tf

    from sparkdl_lite import TFGraph, TFTransformer
    from sparkdl_lite.runner import engine

    rng = np.random.default_rng(0)
    # 136 MB: over gRPC's 128 MiB message limit (the size that matters), and no bigger: a larger graph
    # only makes the suite slower (212 MB took 81 s classic, 56 s on Connect)
    weights = rng.standard_normal(34_000_000).astype(np.float32)
    graph = TFGraph.from_function(lambda x: {"y": x + tf.constant(weights)[:4]},
                                  [tf.TensorSpec([None, 4], tf.float32, name="x")])
    size = len(graph.to_bytes())
    assert size > 128 * 2**20
    x = rng.standard_normal((6, 4)).astype(np.float32)
    df = spark.createDataFrame(pd.DataFrame({"id": range(6), "x": list(x.astype(np.float64))}))
    t = TFTransformer(graph=graph, inputMapping={"x": "x"}, outputMapping={"y": "y"}, outputMode="array")
    want = x + weights[:4]
    got = np.array([r.y for r in t.transform(df).orderBy("id").collect()])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    t.write().overwrite().save(str(tmp_path / "big"))
    del graph, t
    loaded = TFTransformer.load(str(tmp_path / "big"))
    assert len(loaded.graph.to_bytes()) == size
    again = np.array([r.y for r in loaded.transform(df).orderBy("id").collect()])
    np.testing.assert_allclose(again, want, rtol=1e-6)
    return engine.is_connect(spark)

