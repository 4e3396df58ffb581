"""The kfp v2 form of the pipeline: for Vertex AI Pipelines, and for kfp.local on this machine.

`steps` says what each step runs (entry point, config and artifact arguments), `dataflow`
what the Beam steps add on Dataflow, `kfp_components` turns a step into a kfp component
(a container for Vertex, a Python function for kfp.local), `local_step` is what that Python
function calls, and `jobs` builds the Vertex `PipelineJob` and schedule requests.
`pipeline.vertex_runner` ties them to one `create_pipeline`.
"""
