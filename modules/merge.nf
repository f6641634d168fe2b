/*
 * MERGE: join the recon_<j>.h5 chunks into <scan>_recon.h5 (physically by default, or as a
 * virtual dataset with --merge virtual), with the pyramid levels beside the volume. The
 * chunk files travel on to CLEANUP.
 */
process MERGE {
    tag "${meta.id}"
    label 'process_merge'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(chunks)

    output:
    tuple val(meta), path("${meta.id}_recon.h5"), emit: volume
    tuple val(meta), path('recon_*.h5', includeInputs: true), emit: chunks
    path 'versions.yml', emit: versions

    script:
    """
    teravox-merge --plan ${plan} --chunks-dir . -o ${meta.id}_recon.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}_recon.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
