/*
 * STITCH_ALIGN (multi-scan acquisitions only): where each scan's projections sit in the
 * full field of view. Writes shifts.json, which every PREPROCESS job reads.
 */
process STITCH_ALIGN {
    tag "${meta.id}"
    label 'process_plan'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(raw)

    output:
    tuple val(meta), path('shifts.json'), emit: shifts
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-stitch-align --plan ${plan} -o shifts.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    echo '{"shifts": []}' > shifts.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
