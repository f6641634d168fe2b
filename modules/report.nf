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
    tuple val(meta), path("${meta.id}_report.pdf"), emit: report
    tuple val(meta), path('projections.h5', includeInputs: true), path('proj_*.h5', includeInputs: true), emit: intermediates
    path 'versions.yml', emit: versions

    script:
    def shifts_arg = shifts ? "--shifts ${shifts}" : ''
    """
    teravox-report --plan ${plan} --projections ${projections} --volume ${volume} ${shifts_arg} -o ${meta.id}_report.pdf

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}_report.pdf

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
