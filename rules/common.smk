# Input functions and names shared by the rules. Snakemake owns every path; the package
# only ever receives them as arguments.
import os
import shlex
import sys

from obe.core.config import cpu_processes_per_node  # the Snakefile put workflow/ on sys.path
from obe.sources import dataset_source
from obe.training.config import pipeline_settings, settings_flags

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
    # jobs never download: datasets and models come from the cache that `python -m obe.prefetch`
    # filled, and the Snakefile checked it before any job started (obe.sources)
    "export HF_HUB_OFFLINE=${{HF_HUB_OFFLINE:-1}} HF_DATASETS_OFFLINE=${{HF_DATASETS_OFFLINE:-1}}; "
)


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(config["methods"]),
    seed=r"\d+",
    run=r"base|[a-z_]+__s\d+",
    step=r"\d+",


def dataset_args(name):
    """obe.data flags for one configured dataset (obe.sources: its path, a local mirror, or the hub)."""
    return " ".join(shlex.quote(a) for a in dataset_source(config, name, Path(workflow.basedir)).args)


def dataset_inputs(wildcards):
    """The local files a dataset is read from (none for the hub or synthetic data): a changed file reruns it."""
    return dataset_source(config, wildcards.dataset, Path(workflow.basedir)).inputs


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
    """obe.sampling's --model: a training snapshot, or the base model followed by `--revision <commit>`
    when base_model.revision pins a hub model (in this param, so configs without one rerun nothing)."""
    if wildcards.run == BASE:
        bm = config["base_model"]
        pinned = bm.get("revision") and not bm["embedded"]
        return base_model_dir() + (f" --revision {shlex.quote(bm['revision'])}" if pinned else "")
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


def train_settings(method, seed):
    """One run's TrainConfig settings, resolved from the config (obe.training.config.pipeline_settings)."""
    return pipeline_settings(config, method, seed, eval_steps())


def train_args(method, seed):
    """train_settings as the trainers' flags."""
    return " ".join(shlex.quote(a) for a in settings_flags(train_settings(method, seed)))


def device_args():
    """The torch device of sampling and training (config `device`; the GPU is allocated by
    `gpus_per_job`, kept separate so a GPU-less test cluster can still exercise GPU requests)."""
    return f"--device {config['device']}"


# accelerate launch configs of the trl backend (configs/accelerate), by hardware.sharding
ACCELERATE_CONFIGS = {"none": "one_gpu.yaml", "zero3": "zero3.yaml", "fsdp": "fsdp.yaml"}


def train_module():
    """The trainer of `train.backend`: obe (obe.train, one process) or trl (obe.engines.trl_backend)."""
    return {"obe": "obe.train", "trl": "obe.engines.trl_backend"}[config["train"].get("backend", "obe")]


def train_world():
    """(nodes, processes per node) of a training job: hardware.nodes, and one process per GPU of
    the job (resources.train.gpus, per node) or, without GPUs, obe.core.config.cpu_processes_per_node
    (gloo on CPU). obe.train is always (1, 1); validation refuses anything else for it."""
    if train_module() == "obe.train":
        return 1, 1
    hw = config.get("hardware") or {}
    return hw.get("nodes", 1), job_resources("train")["gpus"] or cpu_processes_per_node(config)


def rank_threads():
    """Torch threads of each training process: the job's threads (CPUs per node) over the
    processes of a node, so that 8 ranks of a 64-CPU job run 8 threads each, not 64."""
    return max(1, job_resources("train")["threads"] // train_world()[1])


def train_launch():
    """The command that starts the trainer, up to its flags. obe: `python -m obe.train`. trl:
    `accelerate launch` with configs/accelerate/<file of hardware.sharding> over the job's GPUs
    (cpu.yaml without GPUs; with hardware.cpu_processes the same config as on GPUs over that many
    gloo CPU processes per node), slurm/trl_multinode.sh (one launcher per node) when
    hardware.nodes > 1, plus the TRL-only flags: vLLM colocate when hardware.colocate_vllm is set
    (with train.vllm_importance_sampling_correction), LoRA from train.lora."""
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
        flags.append("--vllm-importance-sampling-correction" if t.get("vllm_importance_sampling_correction", True)
                     else "--no-vllm-importance-sampling-correction")
    lora = t.get("lora") or {}
    if lora.get("r", 0) > 0:
        flags += ["--lora-r", lora["r"], "--lora-alpha", lora.get("alpha", 32), "--lora-dropout",
                  lora.get("dropout", 0.05), "--lora-target-modules", lora.get("target_modules", "all-linear")]
    flags = " ".join(shlex.quote(str(f)) for f in flags)
    nodes, procs = train_world()
    # CPU processes stand in for GPUs under the same accelerate config (hardware.cpu_processes)
    name = ACCELERATE_CONFIGS[hw.get("sharding", "none")] if gpus or hw.get("cpu_processes") else "cpu.yaml"
    launch = ["--config_file", str(folder / name)]
    # accelerate starts several processes only through torchrun, which it runs for a config
    # with a distributed type; cpu.yaml and one_gpu.yaml have none, so --multi_gpu asks for
    # torchrun (DDP; on CPU with gloo). Never with fsdp.yaml or zero3.yaml: the flag would
    # override their distributed type.
    if nodes * procs > 1 and name in ("cpu.yaml", "one_gpu.yaml"):
        launch.append("--multi_gpu")
    if nodes > 1:
        script = Path(workflow.basedir) / "slurm" / "trl_multinode.sh"
        return shutdown_timeout() + " ".join(shlex.quote(str(a)) for a in (script, procs, *launch, "--")) + f" {flags}"
    if gpus or procs > 1:
        launch += ["--num_processes", procs]
    if procs > 1:  # a free port from the OS: two jobs on one node must not both take 29500
        launch += ["--main_process_port", 0]
    launch = " ".join(shlex.quote(str(a)) for a in launch)
    return f"{shutdown_timeout()}python -m obe.engines.launch {launch} -m obe.engines.trl_backend {flags}"


def shutdown_timeout():
    """With resources.train.stop_grace_s: how long torchrun (under accelerate launch) waits, after a
    SIGTERM, for its ranks to finish their step and agreed checkpoint before it kills them (torch's
    default, 30 s, is shorter than one step of a 7-8B preset), as a command prefix."""
    grace = config["resources"]["train"].get("stop_grace_s")
    return f"env TORCH_ELASTIC_SHUTDOWN_TIMEOUT={int(grace)} " if grace else ""


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


def rule_resources(name):
    """A rule's `resources:` (used as `resources: **rule_resources(name)`). Attempt k of a job
    gets k x runtime, so a job killed at its time limit and retried (the Slurm profile's
    `retries`) comes back with more time; sampling and training resume where they stopped.
    `gpu` is the resource snakemake-executor-plugin-slurm turns into --gpus."""
    r = job_resources(name)
    resources = {
        "mem_mb": r["mem_mb"],
        "runtime": lambda wildcards, attempt: r["runtime"] * attempt,
        "gpu": r["gpus"],
    }
    if name == "train":
        resources.update(train_slurm_resources(r))
    grace = config["resources"][name].get("stop_grace_s")
    if grace:  # the stop comes early enough for the job to finish its step and checkpoint
        resources["slurm_extra"] = f"--signal=TERM@{grace}"
    return resources


def train_slurm_resources(r):
    """What a training job of several nodes (hardware.nodes) asks Slurm for, beyond
    rule_resources' own: sbatch --nodes=N --ntasks=N (one launcher per node; `threads` stays the
    CPUs of each node's task) and, with GPUs, --gres=gpu:G (G per node, where --gpus would count
    the whole job's); `mpi` makes the plugin run the rule's command in the batch step on the
    first node, outside any job step, so that slurm/trl_multinode.sh's srun can start its step
    over every node (tasks_per_gpu: 0 keeps the plugin from turning `tasks` into --ntasks-per-gpu)."""
    nodes, _ = train_world()
    extra = {}
    if nodes > 1:
        extra.update(nodes=nodes, mpi="srun", tasks=nodes, tasks_per_gpu=0)
        if r["gpus"]:
            extra.update(gpu=0, gres=f"gpu:{r['gpus']}")
    return extra


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
