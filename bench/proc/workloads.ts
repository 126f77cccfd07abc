/** The shell workloads bench/proc times: what CI jobs and sandboxes are made of (fork+exec, pipes, the shell). */
export const WORKLOADS: { name: string; command: string }[] = [
  { name: 'fork+exec x400', command: 'i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done' },
  { name: 'pipeline', command: 'seq 1 30000 | sort -rn | md5sum' },
  { name: 'shell loop x20k', command: 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' },
];
