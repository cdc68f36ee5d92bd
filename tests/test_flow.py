"""The Prefect flow runs the DVC stages in order and never shows a failed stage as green."""
from __future__ import annotations

import mlflow
import pytest
import networkx as nx
from dvc.repo import Repo

from prefect.testing.utilities import prefect_test_harness

from ops.stage_order import stage_order
from pipelines.flow import StageFailed, pipeline
from ops.tracking import STAGE_RUNS
from tests.conftest import REPO, dvc


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=60):
        yield


def test_dvc_yaml_order_is_a_topological_order():
    order = stage_order(REPO / "dvc.yaml")
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        names = {node: node.addressing for node in graph.nodes}
        for stage, upstream in graph.edges:
            assert order.index(names[upstream]) < order.index(names[stage]), (names[stage], names[upstream])
    assert set(order) == set(names.values())
    assert nx.is_directed_acyclic_graph(graph)


@pytest.mark.slow
def test_flow_runs_the_stages_and_groups_mlflow_runs(project, harness):
    selected = ["download", "weights", "validate"]
    results = pipeline(profile="ci", stages=selected)
    assert list(results) == selected
    assert results["validate"]["success"] is True
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["privobfnet"], filter_string=STAGE_RUNS, output_format="list")
    ids = {r.data.tags["privobfnet.pipeline_id"] for r in runs}
    assert len(ids) == 1 and ids.pop().startswith("prefect-")
    assert sorted(r.info.run_name for r in runs) == sorted(selected)


@pytest.mark.slow
def test_failing_stage_fails_the_flow(project, harness):
    dvc("repro", "download")
    image = next((project / "data/raw/synthpriv/images/train").glob("*.jpg"))
    image.write_bytes(b"not a jpeg")
    state = pipeline(profile="ci", stages=["validate"], return_state=True)
    assert state.is_failed()
    with pytest.raises(StageFailed, match="validate") as failure:
        state.result()
    assert failure.value.transient is False and failure.value.returncode != 0


def test_unknown_stage_is_refused(project, harness):
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline(profile="ci", stages=["nonsense"])
