/*
 * REPORT: the one-page PDF a beamline scientist opens first (raw and corrected projection
 * and sinogram, three orthogonal slices, the run's facts). projections.h5 and its chunk
 * files travel on to CLEANUP, which runs only after this job has read them.
 */
process REPORT {
    tag "${meta.id}"
    label 'process_report'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(projections), path(proj_chunks), path(volume), path(raw), path(shifts)

    output:
    tuple val(meta), path('*_report.pdf'), emit: report
    tuple val(meta), path('projections.h5', includeInputs: true), path('proj_[0-9]*.h5', includeInputs: true), emit: intermediates
    path 'versions.yml', emit: versions

    script:
    // the volume and the report are found (and named) through the plan: <scan>_recon.h5 here
    def shifts_arg = shifts ? '--shifts shifts.json' : ''
    """
    TERAVOX_THREADS=${task.cpus} teravox-report --plan plan.json --projections projections.h5 ${shifts_arg}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch stub_report.pdf

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
