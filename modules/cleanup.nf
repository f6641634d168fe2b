/*
 * CLEANUP: once the merged volume and the report exist, remove the intermediates
 * (proj_<k>.h5, projections.h5, recon_<j>.h5). They are staged here as symbolic links
 * into the work directories of the jobs that wrote them; `teravox-cleanup` removes the
 * files the links resolve to (and keeps what the plan says to keep: --keep_intermediates,
 * the chunks of a virtual merge). Published outputs are never touched.
 */
process CLEANUP {
    tag "${meta.id}"
    label 'process_cleanup'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(volume), path(recon_chunks), path(report), path(projections), path(proj_chunks)

    output:
    path 'versions.yml', emit: versions

    script:
    """
    teravox-cleanup --plan plan.json --workdir .

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
