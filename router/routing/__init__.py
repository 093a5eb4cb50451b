"""Where a classified message goes and what it is told: the routing workflow and the reply templates. Pure logic, no I/O."""
