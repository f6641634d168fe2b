/*
 * RECONSTRUCT (one job per sinogram chunk j of the plan): pass 2, from the virtual
 * projections.h5 to recon_<j>.h5 (j on four digits) and/or, after --format, this job's
 * pieces of the OME-Zarr volume (recon_<j>.zarr) and of the TIFF stack (recon_<j>_tiff),
 * which MERGE links into the published volumes without copying them. Carries the process_gpu label too:
 * the `gpu` profile gives that label a GPU, the CUDA image and the fourier-gpu backend.
 */
process RECONSTRUCT {
    tag "${meta.id} j=${chunk}"
    label 'process_reconstruct'
    label 'process_gpu'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan), val(chunk), path(projections)

    output:
    tuple val(meta), path("recon_${chunk.toString().padLeft(4, '0')}*"), emit: chunk
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-reconstruct --plan ${plan} --chunk ${chunk} --projections ${projections} --outdir .

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch recon_${chunk.toString().padLeft(4, '0')}.h5

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
