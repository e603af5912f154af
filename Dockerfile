# The redstream worker and operator commands.
#
#   docker build -t redstream .
#   docker run --rm -v $PWD/redstream.yaml:/etc/redstream.yaml redstream worker
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /redstream ./cmd/redstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /redstream /usr/local/bin/redstream
ENV REDSTREAM_CONFIG=/etc/redstream.yaml
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/redstream"]
CMD ["worker"]
