"""The bound on domains: which keep their name, and how the others' counts add up."""

from __future__ import annotations

from components.shared.domains import (OTHER_DOMAIN, fold_counts, kept_domains, listed_domains,
                                     slice_name)


def test_the_largest_domains_are_kept_and_ties_go_by_name():
    documents = {"c": 5, "a": 2, "b": 5, "d": 2, "": 9}
    assert kept_domains(documents, 1) == {""}
    assert kept_domains(documents, 3) == {"", "b", "c"}
    assert kept_domains(documents, 4) == {"", "a", "b", "c"}
    assert kept_domains(documents, 10) == set(documents)


def test_folded_counts_add_up_and_nothing_folded_means_no_other_entry():
    counts = {"x": {"documents": 3, "bytes": 30}, "y": {"documents": 1, "bytes": 7},
              "z": {"documents": 2, "bytes": 5}}
    assert fold_counts(counts, {"x"}) == {OTHER_DOMAIN: {"documents": 3, "bytes": 12},
                                          "x": {"documents": 3, "bytes": 30}}
    assert fold_counts(counts, {"x", "y", "z"}) == counts


def test_transform_folds_what_ingest_did_not_list():
    stats = {"domains_folded": 2,
             "splits": {"train": {"domains": {"a": {}, OTHER_DOMAIN: {}}},
                        "eval": {"domains": {"b": {}}}}}
    listed = listed_domains(stats)
    assert listed == {"a", "b"}
    assert [slice_name(d, listed) for d in ("a", "b", "c", "")] == ["a", "b", OTHER_DOMAIN,
                                                                    OTHER_DOMAIN]
    # Nothing folded (or a documents artifact from before the bound): every domain stays.
    assert listed_domains({**stats, "domains_folded": 0}) is None
    assert listed_domains({"splits": stats["splits"]}) is None
    assert slice_name("c", None) == "c"
