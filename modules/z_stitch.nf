/*
 * Z_STITCH (vertical stacks only): the levels' merged volumes, one per height step of the
 * scan sheet, joined along z into <stack>_recon.h5, with zstitch.json (where each level sits,
 * the seams' correlations and gains) and <stack>_report.pdf. The level volumes are staged
 * into levels/ and named by a glob; every output name comes from the stack's plan.
 */
process Z_STITCH {
    tag "${meta.id}"
    label 'process_merge'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(plan, stageAs: 'plan.json'), path(volumes, stageAs: 'levels/*')

    output:
    tuple val(meta), path('*_recon.h5'), emit: volume
    tuple val(meta), path('*_report.pdf'), emit: report
    tuple val(meta), path('zstitch.json'), emit: zstitch
    path 'versions.yml', emit: versions

    script:
    """
    TERAVOX_THREADS=${task.cpus} teravox-z-stitch --plan plan.json --volumes levels/*

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    touch stub_recon.h5 stub_report.pdf
    echo '{}' > zstitch.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
