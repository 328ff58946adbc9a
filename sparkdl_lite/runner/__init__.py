"""The engine and the task runner: the Spark side every stage stands on.

``engine`` (the ONE module that talks to the session, classic or Connect: conf, shipping bytes,
job tags, files, executor checks), ``train_job`` (the training job: ``TaskSpec`` down, one Spark
task each, ``TaskResult`` back), ``task_data`` (the rows training tasks read: collected, checked,
shipped and loaded once) and ``epochs`` (epochs done by running tasks, for the progress line).
"""
