"""TRL's own GRPO tests with the plain import swap: the swap must pass the same tests as TRL.

Runs `tests/test_grpo_trainer.py` from a TRL source checkout twice, offline: once as written, once with the test
module's `GRPOTrainer` / `GRPOConfig` replaced by `PassKGRPOTrainer` / `PassKGRPOConfig` and nothing else changed.
The tests load tiny models and datasets from the hub; this script builds local stand-ins of the same classes (a tiny
tokenizer with a ChatML template, 2-layer models of each text architecture, prompt-only datasets with the same
columns and splits) in a private hub cache, and gives `load_dataset` in the test module the local copies. Tests
that need what has no stand-in (vision models, GPUs, vLLM, liger, tool-calling chat templates) fail or skip the same
way in both runs; the comparison is per test.

    git clone --depth 1 https://github.com/huggingface/trl /tmp/trl   # release wheels and sdists carry no tests
    python benchmarks/trl_suite.py --trl-source /tmp/trl [-k EXPR] [--workers 2] [--out DIR]

Prints each test whose outcome differs, then the counts; last line `trl_suite_same: <same>/<total>`.
The fast equivalence checks that CI runs on every TRL of the tested range are `tests/test_dropin.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_FILE = "test_grpo_trainer.py"
SUPPORT_FILES = ("__init__.py", "conftest.py", "testing_utils.py", "testing_constants.py")
FAKE_COMMIT = "0" * 40
MODEL_ID = re.compile(r"trl-internal-testing/tiny-([A-Za-z0-9_]+?)(?:-[\w.]+)?[\"']")
SMALL = dict(  # extra keys are ignored by the configs that do not use them
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=4,
    max_position_embeddings=512,
    moe_intermediate_size=16,
    num_experts=4,
    num_local_experts=4,
    n_routed_experts=4,
    num_experts_per_tok=2,
    tie_word_embeddings=True,
)
PROMPTS = [
    "The sky is",
    "Two plus three makes",
    "A good name for a cat is",
    "The capital of France is",
    "Water boils at",
    "The opposite of hot is",
    "Seven times six is",
    "My favourite colour is",
    "The first letter of the alphabet is",
    "Ten minus four is",
    "The sun rises in the",
    "A square has this many sides:",
    "The largest ocean is the",
    "Ice is frozen",
    "One dozen is",
    "The moon orbits the",
    "Bees make",
    "Fish live in",
    "The day after Monday is",
    "Snow is usually",
]


# ---------------------------------------------------------------------------------------------------------------------
# Stand-ins
# ---------------------------------------------------------------------------------------------------------------------
def _snapshot_dir(hub: Path, repo_id: str, kind: str = "models") -> Path:
    repo = hub / f"{kind}--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return repo / "snapshots" / FAKE_COMMIT


def build_model_standins(hub: Path, test_source: str) -> dict[str, str]:
    """One tiny model per `trl-internal-testing/tiny-<Class>` id the tests name, in hub-cache layout under `hub`.
    Returns `{repo_id: "built" | reason}`."""
    import torch
    import transformers
    from tiny_model import build_tiny_tokenizer  # tests/tiny_model.py

    tokenizer = build_tiny_tokenizer()
    built = {}
    for match in sorted(set(MODEL_ID.finditer(test_source)), key=lambda m: m.group(0)):
        repo_id = match.group(0)[:-1]
        if repo_id in built:
            continue
        cls = getattr(transformers, match.group(1), None)
        if cls is None or not match.group(1).endswith(("ForCausalLM", "ForSequenceClassification")):
            built[repo_id] = f"no stand-in for {match.group(1)} (text models only)"
            continue
        try:
            torch.manual_seed(0)
            config = cls.config_class(
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                num_labels=1,
                **SMALL,
            )
            target = _snapshot_dir(hub, repo_id)
            cls(config).save_pretrained(target)
            tokenizer.save_pretrained(target)
            built[repo_id] = "built"
        except Exception as error:  # an architecture whose config wants more than SMALL: no stand-in, said so
            built[repo_id] = f"no stand-in: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return built


def build_dataset_standins(root: Path) -> None:
    """`trl-internal-testing/zen` prompt-only configs (standard and conversational), train and test splits, as
    parquet files under `root/<config>/<split>.parquet`."""
    from datasets import Dataset

    splits = {"train": PROMPTS[:17], "test": PROMPTS[17:]}
    for split, prompts in splits.items():
        standard = Dataset.from_dict({"prompt": prompts})
        conversational = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
        for config, dataset in (("standard_prompt_only", standard), ("conversational_prompt_only", conversational)):
            (root / config).mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(root / config / f"{split}.parquet")


# ---------------------------------------------------------------------------------------------------------------------
# pytest plugin (loaded in the test run with `-p trl_suite`)
# ---------------------------------------------------------------------------------------------------------------------
def _local_load_dataset(path, name=None, split=None, streaming=False, **kwargs):
    import datasets

    root = Path(os.environ["TRL_SUITE_DATASETS"])
    if path != "trl-internal-testing/zen" or not (root / str(name)).is_dir():
        raise FileNotFoundError(f"trl_suite: no local stand-in for dataset {path!r} config {name!r}")
    files = {p.stem: str(p) for p in sorted((root / name).glob("*.parquet"))}
    return datasets.load_dataset("parquet", data_files=files, split=split, streaming=streaming)


def pytest_configure(config):
    """The test helpers import `is_<package>_available` checks; one that the installed TRL lacks (the checkout is newer
    or older than it) is added as "not available", so the tests that need that package skip."""
    import importlib

    import_utils = importlib.import_module("trl.import_utils")
    source = (Path(str(config.rootpath)) / "tests" / "testing_utils.py").read_text()
    for name in set(re.findall(r"\b(is_\w+_available)\b", source)):
        if not hasattr(import_utils, name):
            setattr(import_utils, name, lambda: False)


def pytest_collection_modifyitems(session, config, items):
    """Point every collected test module at the local datasets and, in swap mode, at the pass@k classes."""
    swap = os.environ.get("TRL_SUITE_MODE") == "swap"
    if swap:
        from trl_passk import PassKGRPOConfig, PassKGRPOTrainer
    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        if hasattr(module, "load_dataset"):
            module.load_dataset = _local_load_dataset
        if swap and hasattr(module, "GRPOTrainer"):
            module.GRPOTrainer, module.GRPOConfig = PassKGRPOTrainer, PassKGRPOConfig


# ---------------------------------------------------------------------------------------------------------------------
# Runs and comparison
# ---------------------------------------------------------------------------------------------------------------------
def run_suite(work: Path, mode: str, select: str | None, workers: int) -> dict[str, str]:
    """`{test id: outcome}` of one run of the copied test file (`mode`: "plain" or "swap")."""
    report = work / f"report-{mode}.xml"
    env = {
        **os.environ,
        "TRL_SUITE_MODE": mode,
        "TRL_SUITE_DATASETS": str(work / "datasets"),
        "HF_HUB_CACHE": str(work / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRL_PASSK_SKIP_TRL_CHECK": os.environ.get("TRL_PASSK_SKIP_TRL_CHECK", ""),
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "tests"), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
    cmd = [sys.executable, "-m", "pytest", f"tests/{TEST_FILE}", "-p", "trl_suite", "-q", "-p", "no:cacheprovider"]
    cmd += ["--junitxml", str(report), "-o", "junit_family=xunit2", "-W", "ignore"]
    if select:
        cmd += ["-k", select]
    if workers > 1:
        cmd += ["-n", str(workers)]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    print(f"{mode}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return parse_junit(report)


def parse_junit(report: Path) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    if not report.is_file():
        raise SystemExit(f"trl_suite: pytest wrote no report ({report}); run it by hand in {report.parent} to see why")
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes[test_id] = outcome
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trl-source", required=True, help="a checkout of huggingface/trl (its tests/ folder)")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression: run a subset")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers (needs pytest-xdist)")
    parser.add_argument("--out", default=None, help="work folder (kept); default: a temporary one, removed")
    args = parser.parse_args(argv)

    source = Path(args.trl_source) / "tests"
    if not (source / TEST_FILE).is_file():
        parser.error(f"{source / TEST_FILE} not found: --trl-source must be a huggingface/trl checkout")
    work = Path(args.out or tempfile.mkdtemp(prefix="trl_suite-"))
    (work / "tests").mkdir(parents=True, exist_ok=True)
    for name in (TEST_FILE, *SUPPORT_FILES):
        if (source / name).is_file():
            shutil.copy(source / name, work / "tests" / name)
    sys.path[:0] = [str(HERE.parent / "tests")]
    standins = build_model_standins(work / "hub", (source / TEST_FILE).read_text())
    build_dataset_standins(work / "datasets")
    for repo_id, state in standins.items():
        if state != "built":
            print(f"  {repo_id}: {state}", file=sys.stderr)

    import trl

    plain = run_suite(work, "plain", args.select, args.workers)
    swap = run_suite(work, "swap", args.select, args.workers)
    tests = sorted(set(plain) | set(swap))
    same = [t for t in tests if plain.get(t) == swap.get(t)]
    for test in tests:
        if plain.get(test) != swap.get(test):
            print(f"DIFFERS {test}: plain {plain.get(test)}, swapped {swap.get(test)}")
    summary = {
        "trl": trl.__version__,
        "tests": len(tests),
        "plain": {o: sum(v == o for v in plain.values()) for o in ("passed", "failed", "skipped")},
        "swapped": {o: sum(v == o for v in swap.values()) for o in ("passed", "failed", "skipped")},
        "same": len(same),
    }
    (work / "summary.json").write_text(json.dumps({**summary, "plain_outcomes": plain, "swap_outcomes": swap}))
    print(json.dumps(summary))
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)
    print(f"trl_suite_same: {len(same)}/{len(tests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
