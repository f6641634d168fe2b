/*
 * COLLECT: projections.h5, an HDF5 virtual dataset over the proj_<k>.h5 chunk files (no
 * pixel is copied; the sources are referenced by their absolute real paths, in the
 * PREPROCESS work directories). The chunk files travel on with it, so that CLEANUP
 * (through REPORT) can remove them once nothing reads them any more.
 */
process COLLECT {
    tag "${meta.id}"
    label 'process_collect'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(chunks)

    output:
    tuple val(meta), path('projections.h5'), path('proj_[0-9]*.h5', includeInputs: true), emit: projections
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-collect --plan ${plan} --chunks-dir . -o projections.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch projections.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
