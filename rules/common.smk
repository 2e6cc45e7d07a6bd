# Input functions and names shared by the rules. Snakemake owns every path; the package
# only ever receives them as arguments.
import os
import shlex
import sys

from obe.core.config import cpu_processes, load_schema  # the Snakefile put workflow/ on sys.path

R = f"{config['results_dir']}/{config['experiment']}"
TEST_SETS = [name for name, ds in config["data"]["test"].items() if ds is not None]
DATASETS = ["train", *TEST_SETS]
BASE = "base"  # run name of the untrained base model (evaluated as step 0)

# Jobs find the package without installing it (cluster conda envs) and share cores politely.
PACKAGE_DIR = shlex.quote(str(Path(workflow.basedir) / "workflow"))
# Without conda envs, jobs use the Python that runs Snakemake (e.g. .venv/bin/snakemake
# works without activating the venv); with --sdm conda, the rule's env provides python.
USES_CONDA = any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method)
PYTHON_BIN = "" if USES_CONDA else shlex.quote(os.path.dirname(sys.executable)) + ":"


def wandb_exports():
    """config.yaml's wandb keys as the variables obe.core.tracking reads, unless the environment sets
    them (the environment wins). In the shell prefix, not in params: a new project or tag reruns nothing."""
    w = config.get("wandb", {})
    values = {"WANDB_PROJECT": w.get("project"), "WANDB_ENTITY": w.get("entity"),
              "WANDB_TAGS": ",".join(w.get("tags") or []) or None}
    return "".join(f"export {k}=${{{{{k}:-{shlex.quote(str(v))}}}}}; " for k, v in values.items() if v)


shell.prefix(
    f"export PATH={PYTHON_BIN}$PATH; "
    f"export PYTHONPATH={PACKAGE_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + wandb_exports() +
    "export OMP_WAIT_POLICY=PASSIVE; set -euo pipefail; "
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(config["methods"]),
    seed=r"\d+",
    run=r"base|[a-z_]+__s\d+",
    step=r"\d+",


def question_cap(name):
    """`data.max_questions` for a dataset (train, or any test set), None when uncapped."""
    return (config["data"].get("max_questions") or {}).get("train" if name == "train" else "test")


def capped(size, cap):
    return size if cap is None else cap if size is None else min(size, cap)


def dataset_args(name):
    """obe.data flags for one configured dataset (at most data.max_questions of its questions)."""
    ds = config["data"]["train"] if name == "train" else config["data"]["test"][name]
    cap = question_cap(name)
    args = ["--source", ds["source"], "--split", ds.get("split", "train" if name == "train" else "test")]
    if ds["source"] == "synthetic":
        args += ["--n", capped(ds.get("n", 1000), cap), "--seed", ds.get("seed", 0)]
        if "difficulty" in ds:
            args += ["--difficulty", ds["difficulty"]]
    elif ds.get("hub"):
        args += ["--hub", ds["hub"]]
    elif ds.get("data_dir"):
        args += ["--data-dir", ds["data_dir"]]
    else:
        args += ["--path", ds["path"]]
    limit = ds.get("limit") if ds["source"] == "synthetic" else capped(ds.get("limit"), cap)  # synthetic: its n
    if limit:
        args += ["--limit", limit, "--seed", ds.get("seed", 0)]
    return " ".join(shlex.quote(str(a)) for a in args)


def base_model_dir():
    bm = config["base_model"]
    return f"{R}/base_model" if bm["embedded"] else bm["name_or_path"]


def base_model_input():
    """The base model as a DAG input (only when the pipeline builds it)."""
    return [f"{R}/base_model"] if config["base_model"]["embedded"] else []


def rehearsal_model():
    """Whether the pipeline builds a stand-in for base_model.name_or_path (size rehearsal)."""
    return config["base_model"].get("size") == "rehearsal"


def base_model_data():
    """What the base model learns from: the synthetic task (no input), or for a rehearsal stand-in
    every prepared dataset (it is built to answer some of the questions it is asked)."""
    return [f"{R}/data/{d}.jsonl" for d in DATASETS] if rehearsal_model() else []


def base_model_size_args():
    """`--size` of obe.base_model and what goes with it: base_model.steps, and for a rehearsal
    stand-in the model it rehearses, its data and the prompt settings it learns them in."""
    bm = config["base_model"]
    args = [bm.get("size", "default")]
    if bm.get("steps"):
        args += ["--steps", bm["steps"]]
    if rehearsal_model():
        args += ["--stand-in-for", bm["name_or_path"], "--data", *base_model_data(), "--dtype", bm.get("dtype", "float32"),
                 "--prompt-template", bm.get("prompt_template", "{problem}\n"),
                 "--use-chat-template", bm.get("use_chat_template", "auto")]
        if bm.get("system_prompt"):
            args += ["--system-prompt", bm["system_prompt"]]
    return " ".join(shlex.quote(str(a)) for a in args)


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
        "--engine", s.get("engine", "auto"),
    ]
    if s.get("backend") == "vllm":
        args += ["--gpu-memory-utilization", s.get("gpu_memory_utilization", 0.9),
                 "--tensor-parallel-size", s.get("tensor_parallel_size", 1)]
        if s.get("max_model_len"):
            args += ["--max-model-len", s["max_model_len"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def final_step():
    return config["train"]["steps"]


def eval_steps():
    """Training steps whose snapshots are evaluated: the configured ones and the final one."""
    return sorted(set(config["evaluation"]["steps"]) | {final_step()})  # validated: all in (0, final]


# The per-method exploration settings (config `methods.<m>`), declared once in the schema, whose
# keys tests/test_bonuses.py checks against obe.rl.bonuses.ExplorationConfig.
METHOD_SETTINGS = list(load_schema()["$defs"]["method_settings"]["properties"])


def train_args(method, seed):
    """obe.train flags: the shared training settings, then this method's exploration settings."""
    t, s, bm = config["train"], config["sampling"], config["base_model"]
    flags = {
        "method": method,
        "seed": seed,
        "steps": t["steps"],
        "batch-questions": t["batch_questions"],
        "n": t["n"],
        "lr": t["lr"],
        "warmup-steps": t["warmup_steps"],
        "lr-schedule": t["lr_schedule"],
        "grad-clip": t["grad_clip"],
        "eps-low": t["eps_low"],
        "eps-high": t["eps_high"],
        "beta": t["beta"],
        "agg": t["agg"],
        "scale": t["scale"],
        "std": t["std"],
        "adv-eps": t["adv_eps"],
        "mu": t["mu"],
        "checkpoint-every": t["checkpoint_every"],
        "engine": t["engine"],
        "reward-extract": t.get("reward_extract", "math_verify"),
        "micro-batch": t.get("micro_batch", 0),
        "rollout-batch": t.get("rollout_batch", 0),
        "log-completions-every": t.get("log_completions_every", 0),
        "master-weights": t.get("master_weights", "float32"),
        "dtype": bm.get("dtype", "float32"),
        "use-chat-template": bm.get("use_chat_template", "auto"),
        "system-prompt": bm.get("system_prompt") or "",
        "save-steps": ",".join(str(x) for x in eval_steps()),
        "max-new-tokens": s["max_new_tokens"],
        "temperature": s["temperature"],
        "top-p": s["top_p"],
        "prompt-template": bm["prompt_template"],
    }
    # this method's exploration settings, in the schema's order (= obe.rl.bonuses.ExplorationConfig's, tested)
    settings = sorted(config["methods"][method].items(), key=lambda kv: METHOD_SETTINGS.index(kv[0]))
    args = [f"--{k}={v}" for k, v in flags.items()]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in settings if not isinstance(v, bool)]
    args.append("--gradient-checkpointing" if t.get("gradient_checkpointing") else "--no-gradient-checkpointing")
    args += [f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in settings if isinstance(v, bool)]
    return " ".join(shlex.quote(a) for a in args)


def device_args():
    """The torch device of sampling and training (config `device`; the GPU is allocated by
    `gpus_per_job`, kept separate so a GPU-less test cluster can still exercise GPU requests)."""
    return f"--device {config['device']}"


# accelerate launch configs of the trl backend (configs/accelerate), by hardware.sharding
ACCELERATE_CONFIGS = {"none": "one_gpu.yaml", "zero3": "zero3.yaml", "fsdp": "fsdp.yaml"}


def train_module():
    """The trainer of `train.backend`: obe (obe.train, one process) or trl (obe.engines.trl_backend)."""
    return {"obe": "obe.train", "trl": "obe.engines.trl_backend"}[config["train"].get("backend", "obe")]


def train_launch():
    """The command that starts the trainer, up to its flags. obe: `python -m obe.train`. trl:
    `accelerate launch` with configs/accelerate/<file of hardware.sharding> over the job's GPUs,
    slurm/trl_multinode.sh when hardware.nodes > 1, plus the TRL-only flags: vLLM colocate when
    hardware.colocate_vllm is set, LoRA from train.lora. Without GPUs: cpu.yaml (one process), or
    with hardware.cpu_processes the same accelerate config as on GPUs over that many gloo CPU
    processes (obe.core.config.cpu_processes; a free port, since CPU jobs share a machine)."""
    if train_module() == "obe.train":
        return "python -m obe.train"
    gpus, hw, t = job_resources("train")["gpus"], config.get("hardware", {}), config["train"]
    folder = Path(workflow.basedir) / "configs" / "accelerate"
    flags = []
    if gpus and hw.get("colocate_vllm"):
        s = config["sampling"]
        flags += ["--vllm", "colocate", "--vllm-gpu-memory-utilization", hw["colocate_vllm"],
                  "--vllm-tensor-parallel-size", s.get("tensor_parallel_size", 1),
                  "--vllm-max-model-len", s.get("max_model_len") or 0]
    lora = t.get("lora") or {}
    if lora.get("r", 0) > 0:
        flags += ["--lora-r", lora["r"], "--lora-alpha", lora.get("alpha", 32), "--lora-dropout",
                  lora.get("dropout", 0.05), "--lora-target-modules", lora.get("target_modules", "all-linear")]
    flags = " ".join(shlex.quote(str(f)) for f in flags)
    cfg_file = shlex.quote(str(folder / ACCELERATE_CONFIGS[hw.get("sharding", "none")]))
    if not gpus and hw.get("cpu_processes"):
        # no --cpu: accelerate's --cpu runs one process; the trainer's --device cpu keeps it off GPUs
        return (f"python -m accelerate.commands.launch --config_file {cfg_file} --num_processes {cpu_processes(config)}"
                f" --main_process_port 0 -m obe.engines.trl_backend {flags}")
    if not gpus:
        return f"python -m accelerate.commands.launch --config_file {folder / 'cpu.yaml'} -m obe.engines.trl_backend {flags}"
    nodes = hw.get("nodes", 1)
    if nodes > 1:
        return f"{shlex.quote(str(Path(workflow.basedir) / 'slurm' / 'trl_multinode.sh'))} {cfg_file} {gpus} {flags}"
    return (f"python -m accelerate.commands.launch --config_file {cfg_file} --num_processes {gpus}"
            f" -m obe.engines.trl_backend {flags}")


def job_resources(rule):
    """What one rule's jobs ask for, from config `resources.<rule>`: mem_mb (MB), runtime
    (minutes of the first attempt), gpus and threads; a null gpus or threads is the top-level
    `gpus_per_job` or `threads` (the one place of each default)."""
    r = config["resources"][rule]
    return {
        "mem_mb": r["mem_mb"],
        "runtime": r["runtime"],
        "gpus": config["gpus_per_job"] if r["gpus"] is None else r["gpus"],
        "threads": config["threads"] if r["threads"] is None else r["threads"],
    }


def rule_resources(rule):
    """A rule's `resources:` (used as `resources: **rule_resources(name)`). Attempt k of a job
    gets k x runtime, so a job killed at its time limit and retried (the Slurm profile's
    `retries`) comes back with more time; sampling and training resume where they stopped.
    `gpu` is the resource snakemake-executor-plugin-slurm turns into --gpus."""
    r = job_resources(rule)
    return {
        "mem_mb": r["mem_mb"],
        "runtime": lambda wildcards, attempt: r["runtime"] * attempt,
        "gpu": r["gpus"],
    }


def trained_runs():
    return [f"{m}__s{s}" for m in config["train"]["methods"] for s in config["train"]["seeds"]]


def eval_triples():
    """(run, step, dataset) of every evaluation: the base model at step 0, each run at each step."""
    triples = [(BASE, 0, d) for d in TEST_SETS]
    triples += [(run, step, d) for run in trained_runs() for step in eval_steps() for d in TEST_SETS]
    return triples


def analysis_eval_inputs():
    return [f"{R}/eval/{run}/step{step}/{d}/summary.json" for run, step, d in eval_triples()]


def analysis_eval_args():
    return " ".join(f"--eval {run}:{step}:{d}={R}/eval/{run}/step{step}/{d}" for run, step, d in eval_triples())


def run_eval_triples(wildcards):
    """(run, step, dataset) of one trained model's evaluations, its base model's as step 0."""
    run = f"{wildcards.method}__s{wildcards.seed}"
    return [(r, s, d) for r, s, d in eval_triples() if r in (BASE, run)]


def run_eval_summaries(wildcards):
    return [f"{R}/eval/{run}/step{step}/{d}/summary.json" for run, step, d in run_eval_triples(wildcards)]


def run_eval_args(wildcards):
    return " ".join(f"--eval {step}:{d}={R}/eval/{run}/step{step}/{d}/summary.json"
                    for run, step, d in run_eval_triples(wildcards))


def all_outputs():
    return [f"{R}/report.html", *(f"{R}/logged_evals/{run}.json" for run in trained_runs())]
