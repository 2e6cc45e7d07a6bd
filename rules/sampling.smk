rule sample:
    """Sample a model (base = step 0, or a training snapshot) on one dataset.

    The sampler resumes from {output}.part after a killed job (Snakemake does not delete
    that file), and the finished file is moved into place at the end.
    """
    input:
        model=model_input,
        data=f"{R}/data/{{dataset}}.jsonl",
    output:
        f"{R}/samples/{{run}}/step{{step}}/{{dataset}}.jsonl",
    params:
        model=model_path,
        n=samples_per_question,
        seed=config["evaluation"]["seed"],
        sampling=lambda wildcards: sampling_args(),
        prompt=lambda wildcards: prompt_args(),
        device=device_args(),
    threads: job_resources("sample")["threads"]
    resources:
        **rule_resources("sample"),
    log:
        f"{R}/logs/sample/{{run}}/step{{step}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/sample/{{run}}/step{{step}}/{{dataset}}.tsv"
    conda:
        "../envs/gpu.yaml" if job_resources("sample")["gpus"] else "../envs/cpu.yaml"
    shell:
        "python -m obe.sampling --model {params.model} --data {input.data} --n {params.n}"
        " --seed {params.seed} {params.sampling} {params.prompt} {params.device} --threads {threads}"
        " --out {output}.part > {log} 2>&1"
        " && mv {output}.part.meta.json {output}.meta.json && mv {output}.part {output}"


rule grade:
    """Grade samples against gold answers (separate from sampling: a grader change reruns only this)."""
    input:
        samples=f"{R}/samples/{{run}}/step{{step}}/{{dataset}}.jsonl",
        data=f"{R}/data/{{dataset}}.jsonl",
    output:
        f"{R}/graded/{{run}}/step{{step}}/{{dataset}}.jsonl",
    threads: job_resources("grade")["threads"]
    resources:
        **rule_resources("grade"),
    log:
        f"{R}/logs/grade/{{run}}/step{{step}}/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/grade/{{run}}/step{{step}}/{{dataset}}.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        "python -m obe.grade --samples {input.samples} --data {input.data} --out {output} > {log} 2>&1"
