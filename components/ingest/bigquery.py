"""Rows of a BigQuery table or query (`data.bigquery`), read by Beam's BigQuery source.

`ReadFromBigQuery` runs an export job (`EXPORT`: the rows go to Avro files under a gs://
location, then are read in parallel) or reads through the Storage Read API
(`DIRECT_READ`: no files, the table's columns chosen by `columns`). The rows are dicts of
column -> value, as the file readers give (`tables.py`), so the one mapping
(`data.text_field`, ...) and cleaning apply unchanged; they reach `ReadAndClean` in
batches (`RowBatch`), so that its counts are per batch rather than per row.

Beam finds the project and the temporary location in the pipeline options
(`pipeline.beam_args`, which `vertex.dataflow` fills on Vertex) when the config leaves
them out; both are checked here, before the pipeline runs, so a missing one is one line
naming the key rather than an error from inside the job.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipeline.core.errors import UsageError

# Rows per batch handed to cleaning: large enough to keep Beam's per-element cost off the
# hot path, small enough for any worker's memory with documents of up to a few MB.
ROWS_PER_BATCH = 1000


@dataclass(frozen=True)
class RowBatch:
    """Rows read from BigQuery, cleaned together by `ReadAndClean`."""

    rows: list


def read_arguments(bq, options) -> dict:
    """The arguments of Beam's `ReadFromBigQuery` for `data.bigquery`.

    Args:
        bq: the `BigQueryConfig`.
        options: the pipeline's `PipelineOptions` (`--project`, `--temp_location`).

    Returns:
        Keyword arguments: `method`, `project`, `table` (and `selected_fields`) or a
        standard-SQL `query`, and for `EXPORT` the `gcs_location` of the exported files.

    Raises:
        UsageError: no project, or no gs:// location for an export.
    """
    from apache_beam.io.gcp.bigquery import ReadFromBigQuery
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    cloud = options.view_as(GoogleCloudOptions)
    project = bq.project or cloud.project
    if not project:
        raise UsageError("data.bigquery.project: BigQuery needs a project to run its jobs in "
                         "(set it, or --project=... in pipeline.beam_args)")
    method = getattr(ReadFromBigQuery.Method, bq.method)
    arguments = {"method": method, "project": project}
    if bq.method == "EXPORT":
        location = bq.gcs_location or cloud.temp_location
        if not (location or "").startswith("gs://"):
            raise UsageError("data.bigquery.gcs_location: a BigQuery EXPORT writes the rows to "
                             "Cloud Storage first and needs a gs:// location (set it, or "
                             "--temp_location=gs://... in pipeline.beam_args), got "
                             f"{location!r}")
        arguments["gcs_location"] = location
    if bq.query is not None:
        return {**arguments, "query": bq.query, "use_standard_sql": True}
    if bq.columns and bq.method == "EXPORT":  # an export job takes every column
        columns = ", ".join(f"`{c}`" for c in bq.columns)
        return {**arguments, "query": f"SELECT {columns} FROM `{_sql_table(bq.table)}`",
                "use_standard_sql": True}
    arguments["table"] = bq.table
    if bq.columns:
        arguments["selected_fields"] = list(bq.columns)
    return arguments


def _sql_table(table: str) -> str:
    """`project:dataset.table` (Beam's form) as standard SQL names it."""
    return table.replace(":", ".", 1)


class ReadRows(beam.PTransform):
    """BigQuery rows in `RowBatch`es.

    Args:
        bq: the `BigQueryConfig`.
        options: the pipeline's options.
    """

    def __init__(self, bq, options):
        super().__init__()
        self.arguments = read_arguments(bq, options)

    def expand(self, pipeline):
        from apache_beam.io.gcp.bigquery import ReadFromBigQuery

        return (pipeline
                | "Read" >> ReadFromBigQuery(**self.arguments)
                | "Batch" >> beam.BatchElements(min_batch_size=ROWS_PER_BATCH,
                                                max_batch_size=ROWS_PER_BATCH)
                | "RowBatch" >> beam.Map(RowBatch))
