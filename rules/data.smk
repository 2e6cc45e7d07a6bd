rule prepare_data:
    """One dataset (training questions or a test set) in the common record schema."""
    input:
        dataset_inputs,
    output:
        data=f"{R}/data/{{dataset}}.jsonl",
        manifest=f"{R}/data/{{dataset}}.manifest.json",
    params:
        # data.strict: a bad row fails the job instead of being dropped (only then do the
        # arguments change, so existing outputs do not rerun)
        args=lambda wildcards: dataset_args(wildcards.dataset) + (" --strict" if config["data"].get("strict") else ""),
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("prepare_data")["threads"]
    resources:
        **rule_resources("prepare_data"),
    log:
        f"{R}/logs/prepare_data/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare_data/{{dataset}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.data {params.args} --out {output.data} --manifest {output.manifest}"
        " --experiment {params.experiment} --wandb-dir {params.wandb_dir} --wandb-name data__{wildcards.dataset}"
        " > {log} 2>&1"
