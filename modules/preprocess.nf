/*
 * PREPROCESS (one job per projection chunk k of the plan): pass-1 corrections of the
 * chunk's projections, written to proj_<k>.h5 (k on four digits).
 */
process PREPROCESS {
    tag "${meta.id} k=${chunk}"
    label 'process_preprocess'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), val(chunk), path(raw), path(shifts)

    output:
    tuple val(meta), path("proj_${chunk.toString().padLeft(4, '0')}.h5"), emit: chunk
    path 'versions.yml', emit: versions

    script:
    def shifts_arg = shifts ? "--shifts ${shifts}" : ''
    """
    TERAVOX_THREADS=${task.cpus} teravox-preprocess --plan ${plan} --chunk ${chunk} ${shifts_arg} --outdir .

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch proj_${chunk.toString().padLeft(4, '0')}.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
