package notify

import (
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// Payload is the JSON body a TypeWebhook target receives for one
// notification. Receivers parse it, so it is a public contract of its own,
// kept apart from controller.Notification: a change to the domain type
// must not change what receivers get. Optional fields are left out when
// empty.
type Payload struct {
	Kind       string           `json:"kind"` // controller.NotifyDeployStarted, ...
	Service    string           `json:"service"`
	Deployment string           `json:"deployment,omitempty"`
	Image      string           `json:"image,omitempty"`
	Color      controller.Color `json:"color,omitempty"`
	Actor      string           `json:"actor,omitempty"`
	// OnBehalfOf is who the actor claims to act for; nothing verified it.
	OnBehalfOf string    `json:"on_behalf_of,omitempty"`
	Message    string    `json:"message"`
	Time       time.Time `json:"time"`
}

func payloadOf(n controller.Notification) Payload {
	return Payload{
		Kind: n.Kind, Service: n.Service, Deployment: n.Deployment, Image: n.Image,
		Color: n.Color, Actor: n.Actor, OnBehalfOf: n.OnBehalfOf, Message: n.Message, Time: n.Time,
	}
}
