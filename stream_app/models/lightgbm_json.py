"""A LightGBM model's JSON dump (``Booster.dump_model()``) back to its text format.

LightGBM loads only its text format, but teams also keep models as the JSON dump. The dump
holds every number the text format needs (thresholds, leaf values and the decision types are
exact doubles), so the conversion is lossless for numerical splits: a test holds the
predictions of the converted model equal to the original's. Categorical splits and linear
trees are refused (import those from the text file ``Booster.save_model`` writes).
"""

from __future__ import annotations

from typing import Any

from stream_app.errors import ConfigurationError

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


def _number(value: float) -> str:
    """A double as LightGBM writes it: exactly (the shortest repr that reads back the same)."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


class _Tree:
    """The flat arrays of the text format, filled from a tree's nested JSON structure."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.internal: list[dict[str, Any]] = []
        self.leaves: dict[int, dict[str, Any]] = {}
        root = info["tree_structure"]
        if "leaf_value" in root:  # a tree of one leaf
            self.leaves[0] = root
        else:
            self._walk(root)

    def _walk(self, node: dict[str, Any]) -> int:
        """Index of ``node`` in the text arrays: ``split_index``, or ``~leaf_index``."""
        if "leaf_index" in node or "leaf_value" in node:
            index = int(node.get("leaf_index", 0))
            self.leaves[index] = node
            return ~index
        if node.get("decision_type") != "<=":
            raise ConfigurationError(
                "the JSON model has categorical splits: import the model's text file instead "
                "(Booster.save_model)"
            )
        self.internal.append(node)
        node["_left"] = self._walk(node["left_child"])
        node["_right"] = self._walk(node["right_child"])
        return int(node["split_index"])

    def text(self) -> str:
        nodes = sorted(self.internal, key=lambda n: int(n["split_index"]))
        leaves = [self.leaves[i] for i in range(len(self.leaves))]

        def join(values: list[Any]) -> str:
            return " ".join(values)

        def decision(node: dict[str, Any]) -> str:
            missing = _MISSING[node.get("missing_type", "None")]
            return str((2 if node.get("default_left") else 0) | (missing << 2))

        info = self.info
        lines = [
            f"Tree={info['tree_index']}",
            f"num_leaves={len(leaves)}",
            "num_cat=0",
            f"split_feature={join([str(n['split_feature']) for n in nodes])}",
            f"split_gain={join([_number(n.get('split_gain', 0)) for n in nodes])}",
            f"threshold={join([_number(n['threshold']) for n in nodes])}",
            f"decision_type={join([decision(n) for n in nodes])}",
            f"left_child={join([str(n['_left']) for n in nodes])}",
            f"right_child={join([str(n['_right']) for n in nodes])}",
            f"leaf_value={join([_number(x['leaf_value']) for x in leaves])}",
            f"leaf_weight={join([_number(x.get('leaf_weight', 0)) for x in leaves])}",
            f"leaf_count={join([str(int(x.get('leaf_count', 0))) for x in leaves])}",
            f"internal_value={join([_number(n.get('internal_value', 0)) for n in nodes])}",
            f"internal_weight={join([_number(n.get('internal_weight', 0)) for n in nodes])}",
            f"internal_count={join([str(int(n.get('internal_count', 0))) for n in nodes])}",
            "is_linear=0",
            f"shrinkage={_number(info.get('shrinkage', 1))}",
        ]
        return "\n".join(lines) + "\n\n"


def text_from_json_dump(dump: dict[str, Any]) -> str:
    """The text model of a ``dump_model()`` JSON (numerical splits only)."""
    if dump.get("name") != "tree" or "tree_info" not in dump:
        raise ConfigurationError("not a LightGBM JSON model (dump_model): no tree_info")
    if int(dump.get("num_class", 1)) != 1:
        raise ConfigurationError("a multiclass model: stream-app serves binary and regression")
    if any(t.get("num_cat", 0) for t in dump["tree_info"]):
        raise ConfigurationError(
            "the JSON model has categorical splits: import the model's text file instead"
        )
    names = list(dump["feature_names"])
    infos = []
    for name in names:
        info = dump.get("feature_infos", {}).get(name)
        if info and "min_value" in info:
            infos.append(f"[{_number(info['min_value'])}:{_number(info['max_value'])}]")
        else:
            infos.append("none")
    header = [
        "tree",
        f"version={dump.get('version', 'v4')}",
        f"num_class={dump.get('num_class', 1)}",
        f"num_tree_per_iteration={dump.get('num_tree_per_iteration', 1)}",
        f"label_index={dump.get('label_index', 0)}",
        f"max_feature_idx={dump.get('max_feature_idx', len(names) - 1)}",
        f"objective={dump['objective']}",
    ]
    if dump.get("average_output"):
        header.append("average_output")
    header += [f"feature_names={' '.join(names)}", f"feature_infos={' '.join(infos)}"]
    trees = "".join(_Tree(info).text() for info in dump["tree_info"])
    return "\n".join(header) + "\n\n" + trees + "end of trees\n"
