rule train:
    """RL training of one method and seed, by obe.train or (train.backend: trl) TRL's
    GRPOTrainer with obe's methods (obe.engines.trl_backend). The trainer's folder holds resumable checkpoints
    that Snakemake does not manage (it only owns done.json), so a killed or preempted job
    resumes where it stopped when the rule runs again."""
    input:
        base_model_input(),
        data=f"{R}/data/train.jsonl",
    output:
        f"{R}/train/{{method}}__s{{seed}}/done.json",
    params:
        model=lambda wildcards: base_model_dir(),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        args=lambda wildcards: train_args(wildcards.method, int(wildcards.seed)),
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
        device=device_args(),
        launch=train_launch(),  # train.backend: obe (one process) or trl (accelerate launch)
        module=train_module(),
        rank_threads=rank_threads(),  # the job's CPUs shared by the processes of a node
    threads: job_resources("train")["threads"]
    resources:
        **rule_resources("train"),
    log:
        f"{R}/logs/train/{{method}}__s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{method}}__s{{seed}}.tsv"
    conda:
        "../envs/gpu.yaml" if job_resources("train")["gpus"] else "../envs/cpu.yaml"
    shell:
        "{params.launch} --model {params.model} --train-data {input.data} --out {params.out_dir}"
        " {params.args} {params.device} --threads {params.rank_threads} --experiment {params.experiment}"
        " --wandb-dir {params.wandb_dir} --on-config-change restart > {log} 2>&1"
        " && python -m {params.module} --write-done {params.out_dir} > {output}"
