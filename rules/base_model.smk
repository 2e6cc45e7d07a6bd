rule base_model:
    """Build and pre-train the embedded tiny base model (embedded configs only): on the synthetic
    task, or (size rehearsal) a stand-in for base_model.name_or_path on the prepared questions."""
    input:
        base_model_data(),
    output:
        directory(f"{R}/base_model"),
    params:
        # base_model.steps and the rehearsal's settings ride on the size argument, so that the
        # command of existing runs, and with it their outputs, stays as it was
        size=lambda wildcards: base_model_size_args(),
        seed=config["base_model"].get("seed", 0),
        difficulty=config["base_model"].get("difficulty", 3),
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("base_model")["threads"]
    resources:
        **rule_resources("base_model"),
    log:
        f"{R}/logs/base_model.log",
    benchmark:
        f"{R}/benchmarks/base_model.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.base_model --out {output} --size {params.size} --seed {params.seed}"
        " --difficulty {params.difficulty} --threads {threads}"
        " --experiment {params.experiment} --wandb-dir {params.wandb_dir} > {log} 2>&1"
