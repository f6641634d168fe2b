/*
 * PLAN: read the scan's metadata and the parameters, write plan.json (the chunk lists
 * every later stage reads). `--workdir .` makes every later file relative to the task's
 * own directory, where Nextflow stages it.
 *
 * The user's files are staged into folders of their own (scan/, sheet/, params/, tori/) and
 * named in the script by a glob, so that no file name a user chose (spaces, quotes, `;`)
 * is ever pasted into the shell script; the flags of plan_args are quoted by main.nf.
 */
process PLAN {
    tag "${meta.id}"
    label 'process_plan'
    container "${params.container_cpu}"

    input:
    tuple val(meta), path(scans, stageAs: 'scan/*'), path(aux), path(scan_sheet, stageAs: 'sheet/*'), path(params_file, stageAs: 'params/*'), path(tori, stageAs: 'tori/*')
    val plan_args

    output:
    tuple val(meta), path('plan.json'), emit: plan
    // a vertical stack (a sheet with heights): each level's own plan, <level>/plan.json
    tuple val(meta), path('*/plan.json'), emit: levels, optional: true
    path 'versions.yml', emit: versions

    script:
    def scan_arg = scans ? 'scan/*' : ''
    def sheet_arg = scan_sheet ? '--scan-sheet sheet/*' : ''
    def params_arg = params_file ? '--params params/*' : ''
    def tori_arg = tori ? '--tori tori/*' : ''
    """
    teravox-plan ${scan_arg} ${sheet_arg} ${params_arg} ${tori_arg} --workdir . -o plan.json ${plan_args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    """
    cat <<-END_PLAN > plan.json
    {
        "proj_chunks": [{"index": 0, "start": 0, "stop": 1}, {"index": 1, "start": 1, "stop": 2}],
        "sino_chunks": [{"index": 0, "start": 0, "stop": 1}, {"index": 1, "start": 1, "stop": 2}]
    }
    END_PLAN

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        teravox: \$(teravox --version 2>&1 | sed 's/^teravox //')
        python: \$(python3 --version 2>&1 | sed 's/^Python //')
    END_VERSIONS
    """
}
