"""Tests of dvc_stages."""

from __future__ import annotations

import networkx as nx
from dvc.repo import Repo

from ops.dvc_stages import stage_order
from tests.conftest import REPO


def test_dvc_yaml_order_is_a_topological_order():
    order = stage_order(REPO / "dvc.yaml")
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        names = {node: node.addressing for node in graph.nodes}
        for stage, upstream in graph.edges:
            assert order.index(names[upstream]) < order.index(names[stage]), (
                names[stage],
                names[upstream],
            )
    assert set(order) == set(names.values())
    assert nx.is_directed_acyclic_graph(graph)
