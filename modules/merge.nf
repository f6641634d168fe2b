/*
 * MERGE: join the recon_<j>.h5 chunks into <scan>_recon.h5 (physically by default, or as a
 * virtual dataset with --merge virtual), with the pyramid levels beside the volume. The
 * chunk files travel on to CLEANUP. The volume's name comes from the plan, not from the
 * script, so a scan's name never reaches the shell.
 */
process MERGE {
    tag "${meta.id}"
    label 'process_merge'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(chunks)

    output:
    tuple val(meta), path('*_recon.h5'), emit: volume
    tuple val(meta), path('recon_*.h5', includeInputs: true), emit: chunks
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-merge --plan plan.json --chunks-dir .

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch stub_recon.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
