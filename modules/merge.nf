/*
 * MERGE: join the recon_<j>.h5 chunks into <scan>_recon.h5 (physically by default, or as a
 * virtual dataset with --merge virtual), with the pyramid levels beside the volume; and/or,
 * after --format, hard-link the RECONSTRUCT jobs' pieces (staged here as links into their
 * work directories) into <scan>_recon.zarr (OME-Zarr, + pyramid and metadata) and
 * <scan>_recon_tiff/ (+ <scan>_recon_tiff.json). The chunk files travel on to CLEANUP.
 * The volumes' names come from the plan, not from the script, so a scan's name never
 * reaches the shell.
 */
process MERGE {
    tag "${meta.id}"
    label 'process_merge'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), path(chunks)

    output:
    tuple val(meta), path('*_recon*'), emit: volume
    tuple val(meta), path('recon_[0-9]*', includeInputs: true), emit: chunks
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
