"""ingest from BigQuery (`data.bigquery`), without a network: the request Beam's
`ReadFromBigQuery` is built with (the source in the expanded pipeline), the options it
needs checked before the pipeline runs, and the rows it yields cleaned as a file's rows."""

from __future__ import annotations

import re

import apache_beam as beam
import pytest

from components.ingest.beam import ReadAndClean, format_stats
from components.ingest.bigquery import ReadRows, RowBatch, read_arguments
from pipeline.core.beam import pipeline_options
from pipeline.core.configio import build
from pipeline.core.config import DataConfig
from pipeline.core.errors import ConfigError, UsageError

PROJECT_AND_TEMP = ("--project=proj", "--temp_location=gs://bucket/tmp")


def bigquery_data(**bigquery) -> DataConfig:
    return build(DataConfig, {"inputs": [], "bigquery": bigquery, "domain_field": "lang"},
                 "data")


def built_sources(data: DataConfig, beam_args) -> list:
    """The BigQuery sources of a pipeline that reads `data.bigquery` (not run)."""
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    _ = pipeline | ReadRows(data.bigquery, pipeline.options)
    found = []

    class Sources(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            self.visit_transform(node)

        def visit_transform(self, node):
            if isinstance(node.transform, beam.io.Read):
                found.append(node.transform.source)

    pipeline.visit(Sources())
    return found


def test_an_export_of_chosen_columns_is_a_standard_sql_query_to_the_temp_location():
    data = bigquery_data(table="proj:corpus.pages", columns=["text", "lang"])
    [source] = built_sources(data, PROJECT_AND_TEMP)
    assert type(source).__name__ == "_CustomBigQuerySource"
    assert source.query.get() == "SELECT `text`, `lang` FROM `proj.corpus.pages`"
    assert source.use_legacy_sql is False
    assert source.method == "EXPORT"
    assert source.project == "proj"
    assert source.gcs_location.get() == "gs://bucket/tmp"


def test_a_direct_read_names_the_table_and_its_columns_and_needs_no_bucket():
    data = bigquery_data(table="corpus.pages", columns=["text"], method="DIRECT_READ",
                         project="billing")
    [source] = built_sources(data, ())
    assert type(source).__name__ == "_CustomBigQueryStorageSource"
    reference = source.table_reference
    # A table without a project is in the project the read runs in.
    assert (reference.projectId, reference.datasetId, reference.tableId) == \
        (None, "corpus", "pages")
    assert source.project == "billing"
    assert source.selected_fields == ["text"]


def test_a_query_and_the_configured_project_and_location_win_over_the_options():
    data = bigquery_data(query="SELECT body AS text FROM `p.d.t` WHERE day = '2026-12-01'",
                         project="billing", gcs_location="gs://exports/bq")
    arguments = read_arguments(data.bigquery, pipeline_options(PROJECT_AND_TEMP))
    assert arguments == {"method": "EXPORT", "project": "billing",
                         "gcs_location": "gs://exports/bq", "use_standard_sql": True,
                         "query": "SELECT body AS text FROM `p.d.t` WHERE day = '2026-12-01'"}


@pytest.mark.parametrize("beam_args, bigquery, key", [
    (("--temp_location=gs://b/t",), {"table": "p:d.t"}, "data.bigquery.project"),
    (("--project=p",), {"table": "p:d.t"}, "data.bigquery.gcs_location"),
    (("--project=p", "--temp_location=/tmp/local"), {"table": "p:d.t"},
     "data.bigquery.gcs_location"),
])
def test_a_missing_project_or_bucket_is_one_line_before_the_pipeline_runs(beam_args, bigquery,
                                                                          key):
    with pytest.raises(UsageError, match=f"^{key}: "):
        read_arguments(bigquery_data(**bigquery).bigquery, pipeline_options(beam_args))


@pytest.mark.parametrize("bigquery, key", [
    ({}, "data.bigquery.table"),
    (None, "data.inputs"),
    ({"table": "p:d.t", "query": "SELECT 1"}, "data.bigquery.table"),
    ({"table": "no_dataset"}, "data.bigquery.table"),
    ({"query": "SELECT text FROM t", "columns": ["text"]}, "data.bigquery.columns"),
    ({"table": "p:d.t", "columns": ["te xt"]}, "data.bigquery.columns[0]"),
    ({"table": "p:d.t", "gcs_location": "/tmp/x"}, "data.bigquery.gcs_location"),
])
def test_bad_bigquery_config_names_the_key(bigquery, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):  # None: no source at all
        build(DataConfig, {"inputs": [], "bigquery": bigquery}, "data")


def test_bigquery_rows_are_cleaned_and_counted_as_a_files_rows():
    data = bigquery_data(table="p:d.t")
    rows = [{"text": "a document from BigQuery", "lang": "en", "views": 3},
            {"text": None, "lang": "en"}, {"text": 12, "lang": "en"},
            {"text": b"bytes column, bad \xff byte in it", "lang": "en"},
            {"text": b"bytes column, good", "lang": None}]
    cleaner = ReadAndClean(data)
    cleaner.setup()
    outputs = list(cleaner.process(RowBatch(rows)))
    counts = outputs[-1].value
    batches = [item for _, batch in outputs[:-1] for item in batch]
    assert sorted((item[1], item[2]) for item in batches) == [
        ('{"domain": "", "meta": {}, "text": "bytes column, good"}', ""),
        ('{"domain": "en", "meta": {"views": 3}, "text": "a document from BigQuery"}', "en")]
    assert counts[("read",)] == 5 and counts[("bigquery_rows",)] == 5
    assert counts[("dropped", "text_not_string")] == 2
    assert counts[("dropped", "invalid_utf8")] == 1
    stats = format_stats(counts, data, 0)
    assert stats["bigquery_rows"] == 5 and stats["documents_read"] == 5
