"""Assignment: which agent gets a waiting conversation, and taking it back when they go silent.

An agent is eligible when they are `available`, belong to the conversation's queue, have every
skill the queue asks for, speak the customer's language, and have room on that channel
(config/agents.yaml capacity). Among the eligible, the customer's last agent comes first when
they accepted a conversation of this customer within the window; otherwise the agent idle
longest. Waiting conversations are taken in dispatch order, so a critical one never waits
behind a lower one for any agent.

- `availability`: agents' status, capacity and who is eligible; the snapshot a dispatcher's
  batch quotes waits from;
- `selector`: which of the eligible agents gets a conversation;
- `offers`: the `Assigner`, offering waiting conversations and taking back the ones an agent
  let go silent.

The statements, and why several dispatcher processes never assign a conversation twice, are in
`router.store.assignments`.
"""
