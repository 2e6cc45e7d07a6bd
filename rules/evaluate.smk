rule evaluate:
    """pass@k for every k, maj@k, distinct answers and lengths, per question and averaged."""
    input:
        f"{R}/graded/{{run}}/step{{step}}/{{dataset}}.jsonl",
    output:
        questions=f"{R}/eval/{{run}}/step{{step}}/{{dataset}}/per_question.jsonl",
        summary=f"{R}/eval/{{run}}/step{{step}}/{{dataset}}/summary.json",
    params:
        wandb_dir=f"{R}/wandb",
        experiment=config["experiment"],
    threads: job_resources("evaluate")["threads"]
    resources:
        **rule_resources("evaluate"),
    log:
        f"{R}/logs/evaluate/{{run}}/step{{step}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{run}}/step{{step}}/{{dataset}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.evaluate --graded {input} --out-questions {output.questions}"
        " --out-summary {output.summary} --run {wildcards.run} --step {wildcards.step}"
        " --dataset {wildcards.dataset} --experiment {params.experiment} --wandb-dir {params.wandb_dir}"
        " > {log} 2>&1"
