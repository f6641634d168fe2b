/*
 * SYNTH (test profile only, not a stage of the reconstruction): a small synthetic DXchange
 * scan with a known ground truth, made by `teravox synth`, to run the whole pipeline on a
 * laptop in minutes. Extra flags: ext.args (conf/test.config).
 */
process SYNTH {
    tag "${meta.id}"
    label 'process_plan'
    container "${params.container_cpu}"

    input:
    val meta

    output:
    tuple val(meta), path("${meta.id}.h5"), emit: scan
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    teravox synth ${meta.id}.h5 --no-progress ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
