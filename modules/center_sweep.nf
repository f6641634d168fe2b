/*
 * CENTER_SWEEP (--center_sweep FROM:TO:STEP): one row reconstructed at each trial centre
 * from projections.h5, drawn as <scan>_center_sweep.pdf and .png with the search's metric
 * and the automatic choice marked. Runs in place of RECONSTRUCT, MERGE, REPORT and
 * CLEANUP: the user picks a centre by eye and reruns with --center. The range and the
 * page's name come from the plan, so no user value reaches the shell.
 */
process CENTER_SWEEP {
    tag "${meta.id}"
    label 'process_collect'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(projections), path(chunks)

    output:
    tuple val(meta), path('*_center_sweep.pdf'), path('*_center_sweep.png'), emit: page
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-center-sweep --plan ${plan} --projections ${projections}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch stub_center_sweep.pdf stub_center_sweep.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
