# Input functions and names shared by the rules. Snakemake owns every path; the package
# only ever receives them as arguments.
import os
import shlex

R = f"{config['results_dir']}/{config['experiment']}"
TEST_SETS = list(config["data"]["test"])
DATASETS = ["train", *TEST_SETS]
BASE = "base"  # run name of the untrained base model (evaluated as step 0)

# Jobs find the package without installing it (cluster conda envs) and share cores politely.
PACKAGE_DIR = shlex.quote(str(Path(workflow.basedir) / "workflow"))
shell.prefix(
    f"export PYTHONPATH={PACKAGE_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    "export OMP_WAIT_POLICY=PASSIVE; set -euo pipefail; "
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    run=r"base|[a-z_]+__s\d+",
    step=r"\d+",


def dataset_args(name):
    """obe.data flags for one configured dataset."""
    ds = config["data"]["train"] if name == "train" else config["data"]["test"][name]
    args = ["--source", ds["source"], "--split", ds.get("split", "train" if name == "train" else "test")]
    if ds["source"] == "synthetic":
        args += ["--n", ds.get("n", 1000), "--seed", ds.get("seed", 0)]
        if "difficulty" in ds:
            args += ["--difficulty", ds["difficulty"]]
    elif ds.get("hub"):
        args += ["--hub", ds["hub"]]
    else:
        args += ["--path", ds["path"]]
    if ds.get("limit"):
        args += ["--limit", ds["limit"], "--seed", ds.get("seed", 0)]
    return " ".join(shlex.quote(str(a)) for a in args)


def base_model_dir():
    bm = config["base_model"]
    return f"{R}/base_model" if bm["embedded"] else bm["name_or_path"]


def base_model_input():
    """The base model as a DAG input (only when the pipeline builds it)."""
    return [f"{R}/base_model"] if config["base_model"]["embedded"] else []


def model_input(wildcards):
    if wildcards.run == BASE:
        return base_model_input()
    return [f"{R}/train/{wildcards.run}/done.json"]


def model_path(wildcards):
    if wildcards.run == BASE:
        return base_model_dir()
    return f"{R}/train/{wildcards.run}/snapshots/step_{wildcards.step}"


def samples_per_question(wildcards):
    return config["evaluation"]["train_n"] if wildcards.dataset == "train" else config["evaluation"]["n"]


def prompt_args():
    bm = config["base_model"]
    args = [
        "--prompt-template", bm.get("prompt_template", "{problem}\n"),
        "--use-chat-template", bm.get("use_chat_template", "auto"),
        "--dtype", bm.get("dtype", "float32"),
    ]
    if bm.get("system_prompt"):
        args += ["--system-prompt", bm["system_prompt"]]
    if bm.get("trust_remote_code"):
        args += ["--trust-remote-code"]
    return " ".join(shlex.quote(str(a)) for a in args)


def sampling_args():
    s = config["sampling"]
    args = [
        "--backend", s.get("backend", "hf"),
        "--temperature", s.get("temperature", 1.0),
        "--top-p", s.get("top_p", 1.0),
        "--max-new-tokens", s.get("max_new_tokens", 512),
        "--batch-size", s.get("batch_size", 16),
    ]
    if s.get("backend") == "vllm" and "gpu_memory_utilization" in s:
        args += ["--gpu-memory-utilization", s["gpu_memory_utilization"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def trained_runs():
    return [f"{m}__s{s}" for m in config["train"]["methods"] for s in config["train"]["seeds"]]


def all_outputs():
    outs = [f"{R}/eval/{BASE}/step0/{d}/summary.json" for d in TEST_SETS]
    outs.append(f"{R}/graded/{BASE}/step0/train.jsonl")
    outs.append(f"{R}/bandits/summary.json")
    return outs
